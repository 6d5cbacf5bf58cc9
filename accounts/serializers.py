"""Request and response bodies of the account endpoints."""

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.models import User

USERNAME_PATTERN = r"\A[A-Za-z0-9._-]{3,30}\Z"
# Generous for passphrases, but bounded: every byte is fed to the password hasher.
PASSWORD_MAX_LENGTH = 256
# A signed JWT of ours is a few hundred bytes; anything far longer is not one.
TOKEN_MAX_LENGTH = 2048


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(
        USERNAME_PATTERN,
        max_length=30,
        error_messages={"invalid": "Use 3 to 30 letters, digits, '.', '_' or '-'."},
    )
    password = serializers.CharField(
        max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False, write_only=True
    )
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)

    def validate_username(self, value: str) -> str:
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("A user with that username already exists.")
        return value

    def validate(self, attrs: dict) -> dict:
        # The similarity validator compares the password with the would-be user's fields.
        candidate = User(username=attrs["username"], email=attrs.get("email", ""))
        try:
            password_validation.validate_password(attrs["password"], candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False, write_only=True
    )


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=TOKEN_MAX_LENGTH)


class VerifySerializer(serializers.Serializer):
    token = serializers.CharField(max_length=TOKEN_MAX_LENGTH)


class UserSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class MeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    rank = serializers.IntegerField(allow_null=True)


class EmptySerializer(serializers.Serializer):
    """An empty JSON object."""
