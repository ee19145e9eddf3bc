"""Internxt's cryptography, as pure functions (protocol §2–§4).

Everything here is deterministic given its inputs (random salts and indexes are parameters with a
random default), so the golden vectors in ``tests/data/internxt-vectors.json`` can be reproduced
exactly. The emulator imports only the pieces a server legitimately needs (the text format keyed
by CRYPTO_SECRET, the password hash, the shard hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import unicodedata

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from mnemonic import Mnemonic

# Public constants of the open-source clients (protocol §2.1).
CRYPTO_SECRET = "6KYQBP847D4ATSFA"
APP_MAGIC_IV = bytes.fromhex("d139cb9a2cd17092e79e1861cf9d7023")
APP_MAGIC_SALT = bytes.fromhex(
    "38dce0391b49efba88dbc8c39ebf868f0267eb110bb0012ab27dc52a528d61b1"
    "d1ed9d76f400ff58e3240028442b1eab9bb84e111d9dadd997982dbde9dbd25e"
)
ENCRYPT_VERSION = "03-aes"

_OPENSSL_MAGIC = b"Salted__"
_BLOCK = 16
_BIP39 = Mnemonic("english")


class CryptoError(ValueError):
    """Ciphertext that does not decrypt: wrong key, wrong format, or corrupted data."""


# --- OpenSSL/CryptoJS passphrase format (protocol §2.2) -------------------------------------


def evp_bytes_to_key(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL EVP_BytesToKey with MD5, one round: 32-byte key and 16-byte IV."""
    secret = passphrase.encode()
    derived = b""
    block = b""
    while len(derived) < 48:
        block = hashlib.md5(block + secret + salt).digest()
        derived += block
    return derived[:32], derived[32:48]


def encrypt_text(plaintext: str, passphrase: str = CRYPTO_SECRET, salt: bytes | None = None) -> str:
    """``Salted__`` ‖ salt ‖ AES-256-CBC(plaintext), hex-encoded lower case."""
    salt = os.urandom(8) if salt is None else salt
    if len(salt) != 8:
        raise ValueError("OpenSSL salt must be 8 bytes")
    key, iv = evp_bytes_to_key(passphrase, salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return (_OPENSSL_MAGIC + salt + enc.update(padded) + enc.finalize()).hex()


def decrypt_text(ciphertext_hex: str, passphrase: str = CRYPTO_SECRET) -> str:
    try:
        raw = bytes.fromhex(ciphertext_hex)
    except ValueError as exc:
        raise CryptoError("ciphertext is not hex") from exc
    if not raw.startswith(_OPENSSL_MAGIC) or len(raw) < 32 or (len(raw) - 16) % _BLOCK:
        raise CryptoError("not an OpenSSL 'Salted__' ciphertext")
    key, iv = evp_bytes_to_key(passphrase, raw[8:16])
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(raw[16:]) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode()
    except ValueError as exc:  # bad padding or not UTF-8: wrong passphrase
        raise CryptoError("wrong passphrase or corrupted ciphertext") from exc


# --- Password hash (protocol §2.3) -----------------------------------------------------------


def password_hash(password: str, salt_hex: str) -> str:
    """PBKDF2-HMAC-SHA1, 10 000 rounds, 32 bytes, hex. SHA-1 is Internxt's choice, not ours."""
    kdf = PBKDF2HMAC(hashes.SHA1(), 32, bytes.fromhex(salt_hex), 10000)
    return kdf.derive(password.encode()).hex()


def login_password_field(password: str, s_key: str, salt: bytes | None = None) -> str:
    """The ``password`` value sent to ``/auth/cli/login/access`` for a pre-login ``sKey``."""
    salt_hex = decrypt_text(s_key)
    return encrypt_text(password_hash(password, salt_hex), salt=salt)


# --- Two-factor codes (TOTP, RFC 6238; protocol §2.4) ---------------------------------------

# Internxt issues 80-bit secrets (16 base32 characters: speakeasy.generateSecret with
# length 10 in internxt/drive-server-wip src/modules/auth/two-factor-auth.service.ts, which
# checks codes with a window of 2 steps), and authenticator apps take them; pyotp refuses
# anything under 112 bits, so it cannot be used for them. We accept down to 80 bits: a
# shorter secret is far more likely a truncated paste than a real one.
TOTP_MIN_BITS = 80
TOTP_STEP = 30


class TotpSecretError(ValueError):
    """A TOTP secret that is not base32, or too short to be a whole secret."""


def totp_secret_bytes(secret: str) -> bytes:
    """Decode a base32 TOTP secret as authenticator apps do: case, spaces, '=' ignored."""
    text = "".join(secret.split()).upper().rstrip("=")
    if not text:
        raise TotpSecretError("the TOTP secret is empty")
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise TotpSecretError(
            "the TOTP secret is not base32 (letters A-Z and digits 2-7, as the 2FA set-up page "
            "shows it), nor an otpauth:// URI"
        ) from None
    if len(raw) * 8 < TOTP_MIN_BITS:
        raise TotpSecretError(
            f"the TOTP secret holds only {len(raw) * 8} bits (at least {TOTP_MIN_BITS}, i.e. "
            f"{TOTP_MIN_BITS // 5} base32 characters, are needed): it looks truncated"
        )
    return raw


def totp_code(secret: str, at: float, digits: int = 6) -> str:
    """The code an authenticator app shows at time ``at`` (HMAC-SHA1, 30 s steps)."""
    counter = int(at // TOTP_STEP).to_bytes(8, "big")
    digest = hmac.new(totp_secret_bytes(secret), counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


# --- Mnemonic and keys (protocol §2.6, §4) ---------------------------------------------------


def is_valid_mnemonic(words: str) -> bool:
    return _BIP39.check(" ".join(words.split()))


def generate_mnemonic() -> str:
    return _BIP39.generate(strength=256)


def mnemonic_from_entropy(entropy: bytes) -> str:
    return _BIP39.to_mnemonic(entropy)


def bip39_seed(words: str) -> bytes:
    # The library applies NFKD to both the words and the (empty) passphrase, as BIP39 says.
    return Mnemonic.to_seed(unicodedata.normalize("NFKD", words), passphrase="")


def bucket_key(seed: bytes, bucket_id: str) -> bytes:
    """The 32 bytes of SHA-512(seed ‖ bucketId) that are actually used."""
    return hashlib.sha512(seed + bytes.fromhex(bucket_id)).digest()[:32]


def file_key_iv(seed: bytes, bucket_id: str, index: bytes) -> tuple[bytes, bytes]:
    key = hashlib.sha512(bucket_key(seed, bucket_id) + index).digest()[:32]
    return key, index[:16]


def new_index() -> bytes:
    return secrets.token_bytes(32)


# --- Content cipher (protocol §4.6–§4.8) -----------------------------------------------------


def ctr_iv_at(iv: bytes, offset: int) -> bytes:
    """The counter block for byte ``offset``: IV + offset // 16, carrying through all 128 bits."""
    counter = (int.from_bytes(iv, "big") + offset // _BLOCK) % (1 << 128)
    return counter.to_bytes(16, "big")


class CtrStream:
    """AES-256-CTR keystream positioned at any byte offset; encrypts and decrypts alike.

    Feed consecutive chunks to :meth:`update`; the first chunk starts at ``offset``.
    """

    def __init__(self, key: bytes, iv: bytes, offset: int = 0) -> None:
        cipher = Cipher(algorithms.AES(key), modes.CTR(ctr_iv_at(iv, offset)))
        self._ctx = cipher.encryptor()
        # Burn the keystream bytes that lie before ``offset`` inside its 16-byte block.
        self._ctx.update(bytes(offset % _BLOCK))

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    def update_into(self, data: bytes | memoryview, out: memoryview) -> int:
        """Like :meth:`update`, written into ``out`` (at least ``len(data) + 15`` bytes, the
        cipher API's rule; CTR writes exactly ``len(data)``). Returns the bytes written."""
        return self._ctx.update_into(data, out)


def ctr_crypt(key: bytes, iv: bytes, data: bytes, offset: int = 0) -> bytes:
    return CtrStream(key, iv, offset).update(data)


def ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        # OpenSSL 3 builds without the legacy provider lack RIPEMD-160; pycryptodome has it.
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(data).digest()


class ShardHasher:
    """Streaming shard hash: RIPEMD-160(SHA-256(ciphertext)), hex."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._sha.update(data)

    def hexdigest(self) -> str:
        return ripemd160(self._sha.digest()).hex()


def shard_hash(ciphertext: bytes) -> str:
    hasher = ShardHasher()
    hasher.update(ciphertext)
    return hasher.hexdigest()


# --- Network credentials (protocol §3) -------------------------------------------------------


def network_password(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def network_auth_header(bridge_user: str, user_id: str) -> str:
    token = base64.b64encode(f"{bridge_user}:{network_password(user_id)}".encode()).decode()
    return f"Basic {token}"


# --- @internxt/lib AES-GCM format (protocol §2.8), for private keys --------------------------


def lib_aes_encrypt(
    plaintext: str, password: str, iv: bytes | None = None, salt: bytes | None = None
) -> str:
    iv = os.urandom(16) if iv is None else iv
    salt = os.urandom(64) if salt is None else salt
    key = PBKDF2HMAC(hashes.SHA512(), 32, salt, 2145).derive(password.encode())
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return base64.b64encode(salt + iv + tag + ciphertext).decode()


def lib_aes_decrypt(encoded: str, password: str) -> str:
    raw = base64.b64decode(encoded)
    salt, iv, tag, ciphertext = raw[:64], raw[64:80], raw[80:96], raw[96:]
    key = PBKDF2HMAC(hashes.SHA512(), 32, salt, 2145).derive(password.encode())
    try:
        return AESGCM(key).decrypt(iv, ciphertext + tag, None).decode()
    except Exception as exc:
        raise CryptoError("wrong password or corrupted data") from exc


# --- Legacy network file-name encryption (protocol §4.11); not used by Drive v2 --------------

BUCKET_META_MAGIC = bytes(
    [
        *(66, 150, 71, 16, 50, 114, 88, 160, 163, 35, 154, 65, 162, 213, 226, 215),
        *(70, 138, 57, 61, 52, 19, 210, 170, 38, 164, 162, 200, 86, 201, 2, 81),
    ]
)


def legacy_encrypt_filename(mnemonic_words: str, bucket_id: str, filename: str) -> str:
    import hmac

    bkey = bucket_key(bip39_seed(mnemonic_words), bucket_id)
    key = hmac.new(bkey, BUCKET_META_MAGIC, hashlib.sha512).digest()[:32]
    iv = hmac.new(bkey, bucket_id.encode() + filename.encode(), hashlib.sha512).digest()[:32]
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    ciphertext = enc.update(filename.encode()) + enc.finalize()
    return base64.b64encode(enc.tag + iv + ciphertext).decode()
