"""Every value of Internxt's golden vectors (computed with Internxt's own libraries)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from internxtfs.internxt import crypto

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "internxt-vectors.json").read_text())


def test_password_hash_is_pbkdf2_sha1_and_not_the_cryptojs_4_2_default() -> None:
    v = VECTORS["password_hash"]
    got = crypto.password_hash(v["password"], v["salt_hex"])
    assert got == v["hash_hex"]
    assert got != v["wrong_hash_if_sha256_default_of_cryptojs_4_2"]


def test_crypto_secret_text_fixed_salt() -> None:
    v = VECTORS["crypto_secret_text"]
    salt = bytes.fromhex(v["openssl_salt_hex"])
    key, iv = crypto.evp_bytes_to_key(v["crypto_secret"], salt)
    assert key.hex() == v["derived_key_hex"]
    assert iv.hex() == v["derived_iv_hex"]
    assert v["crypto_secret"] == crypto.CRYPTO_SECRET
    assert crypto.encrypt_text(v["plaintext"], salt=salt) == v["ciphertext_hex_fixed_salt"]
    assert crypto.decrypt_text(v["ciphertext_hex_fixed_salt"]) == v["plaintext"]


def test_crypto_secret_text_from_cryptojs_decrypts() -> None:
    v = VECTORS["crypto_secret_text"]
    assert crypto.decrypt_text(v["ciphertext_hex_random_salt_from_cryptojs"]) == v["plaintext"]


def test_random_salt_round_trip_and_wrong_passphrase() -> None:
    text = crypto.encrypt_text("hello", "pass")
    assert text.startswith("53616c7465645f5f")
    assert crypto.decrypt_text(text, "pass") == "hello"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_text(text, "other passphrase")
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_text("not hex at all")


def test_login_password_field() -> None:
    v = VECTORS["login_password_field"]
    s_key = VECTORS["crypto_secret_text"]["ciphertext_hex_random_salt_from_cryptojs"]
    salt = bytes.fromhex(v["openssl_salt_hex"])
    got = crypto.login_password_field(VECTORS["password_hash"]["password"], s_key, salt=salt)
    assert got == v["encrypted_password_hash_hex"]
    assert crypto.decrypt_text(got) == v["hash_hex"]


def test_mnemonic_entropy_encryption_and_seed() -> None:
    v = VECTORS["mnemonic"]
    assert crypto.mnemonic_from_entropy(bytes.fromhex(v["entropy_hex"])) == v["mnemonic"]
    assert crypto.is_valid_mnemonic(v["mnemonic"])
    salt = bytes.fromhex(v["openssl_salt_hex"])
    fixed = crypto.encrypt_text(v["mnemonic"], v["password"], salt=salt)
    assert fixed == v["encrypted_with_password_hex_fixed_salt"]
    for ct in (fixed, v["encrypted_with_password_hex_random_salt_from_cryptojs"]):
        assert crypto.decrypt_text(ct, v["password"]) == v["mnemonic"]
    assert crypto.bip39_seed(v["mnemonic"]).hex() == v["bip39_seed_hex"]


def test_invalid_mnemonics_are_rejected() -> None:
    words = VECTORS["mnemonic"]["mnemonic"].split()
    assert not crypto.is_valid_mnemonic(" ".join([*words[:-1], "abandon"]))
    assert not crypto.is_valid_mnemonic("not a mnemonic")
    assert crypto.is_valid_mnemonic(crypto.generate_mnemonic())


def test_network_auth() -> None:
    v = VECTORS["network_auth"]
    assert crypto.network_password(v["userId"]) == v["basic_password_sha256_hex_of_userId"]
    assert crypto.network_auth_header(v["bridgeUser"], v["userId"]) == v["authorization_header"]


def test_bucket_key_file_key_iv() -> None:
    v = VECTORS["keys"]
    seed = bytes.fromhex(VECTORS["mnemonic"]["bip39_seed_hex"])
    import hashlib

    full = hashlib.sha512(seed + bytes.fromhex(v["bucketId"])).hexdigest()
    assert full == v["bucket_key_sha512_full_hex"]
    assert crypto.bucket_key(seed, v["bucketId"]).hex() == v["bucket_key_hex"]
    key, iv = crypto.file_key_iv(seed, v["bucketId"], bytes.fromhex(v["index_hex"]))
    assert key.hex() == v["file_key_hex"]
    assert iv.hex() == v["iv_hex"]


def _small_file_key() -> tuple[bytes, bytes]:
    seed = bytes.fromhex(VECTORS["mnemonic"]["bip39_seed_hex"])
    v = VECTORS["keys"]
    return crypto.file_key_iv(seed, v["bucketId"], bytes.fromhex(v["index_hex"]))


def test_small_file_ciphertext_and_shard_hash() -> None:
    v = VECTORS["small_file"]
    plain = bytes(range(v["plaintext_len"]))
    assert plain.hex() == v["plaintext_hex"]
    key, iv = _small_file_key()
    ct = crypto.ctr_crypt(key, iv, plain)
    assert ct.hex() == v["ciphertext_hex"]
    import hashlib

    assert hashlib.sha256(ct).hexdigest() == v["ciphertext_sha256_hex"]
    assert crypto.shard_hash(ct) == v["shard_hash_ripemd160_of_sha256_hex"]
    assert v["sdk_finish_upload_payload"]["shards"][0]["hash"] == crypto.shard_hash(ct)
    assert crypto.ctr_crypt(key, iv, ct) == plain


def test_small_file_range_read() -> None:
    v = VECTORS["small_file"]
    r = v["range_read"]
    key, iv = _small_file_key()
    ct = bytes.fromhex(v["ciphertext_hex"])
    start, aligned = r["start_offset"], r["aligned_start_offset"]
    assert crypto.ctr_iv_at(iv, aligned).hex() == r["iv_for_range_hex"]
    # the way a client decrypts a range fetched from the aligned start
    block = crypto.ctr_crypt(key, iv, ct[aligned:], offset=aligned)
    got = block[r["bytes_to_discard_after_decrypting_from_aligned_start"] :]
    assert got.hex() == r["expected_plaintext_hex"]
    # and from the unaligned offset directly
    assert crypto.ctr_crypt(key, iv, ct[start:], offset=start).hex() == r["expected_plaintext_hex"]


@pytest.mark.parametrize("offset", [0, 1, 15, 16, 17, 31, 33, 63, 99])
def test_ctr_stream_any_offset_and_chunking(offset: int) -> None:
    key, iv = _small_file_key()
    plain = bytes(range(100))
    ct = crypto.ctr_crypt(key, iv, plain)
    stream = crypto.CtrStream(key, iv, offset)
    got = b"".join(stream.update(ct[i : i + 7]) for i in range(offset, 100, 7))
    assert got == plain[offset:]


def test_ctr_counter_carries_through_128_bits() -> None:
    v = VECTORS["ctr_counter_carry"]
    seed = bytes.fromhex(VECTORS["mnemonic"]["bip39_seed_hex"])
    key, iv = crypto.file_key_iv(seed, VECTORS["keys"]["bucketId"], bytes.fromhex(v["index_hex"]))
    assert iv.hex() == v["iv_hex"]
    assert key.hex() == v["file_key_hex"]
    ct = crypto.ctr_crypt(key, iv, bytes(80))
    assert ct.hex() == v["ciphertext_hex"]
    # a range that starts after the carry decrypts the same way
    assert crypto.ctr_crypt(key, iv, ct[48:], offset=48) == bytes(32)


def test_internxt_lib_aes_gcm() -> None:
    for name in ("private_key_style", "server_side_file_name_style"):
        v = VECTORS["internxt_lib_aes"][name]
        iv, salt = bytes.fromhex(v["iv_hex"]), bytes.fromhex(v["salt_hex"])
        assert iv == crypto.APP_MAGIC_IV and salt == crypto.APP_MAGIC_SALT
        got = crypto.lib_aes_encrypt(v["plaintext"], v["password"], iv=iv, salt=salt)
        assert got == v["ciphertext_b64"]
        assert crypto.lib_aes_decrypt(got, v["password"]) == v["plaintext"]
        with pytest.raises(crypto.CryptoError):
            crypto.lib_aes_decrypt(got, "wrong")


def test_legacy_network_filename_encryption() -> None:
    v = VECTORS["legacy_network_filename_encryption"]
    got = crypto.legacy_encrypt_filename(
        VECTORS["mnemonic"]["mnemonic"], VECTORS["keys"]["bucketId"], v["filename"]
    )
    assert got == v["encrypted_b64"]
