//! `crypto.getRandomValues` and `crypto.randomUUID` from the operating system's CSPRNG.
//! (`crypto.subtle` is not part of this extension yet.)

use deno_core::op2;

/// The most bytes one `getRandomValues` call may fill (Web Crypto's quota).
pub const MAX_RANDOM_BYTES: usize = 65536;

#[derive(Debug, thiserror::Error, deno_error::JsError)]
enum CryptoError {
    #[class(generic)]
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|err| CryptoError::Random(err.to_string()))
}

#[op2(fast)]
fn op_crypto_get_random_values(#[buffer] buf: &mut [u8]) -> Result<(), CryptoError> {
    fill(buf)
}

#[op2]
#[string]
fn op_crypto_random_uuid() -> Result<String, CryptoError> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    Ok(format_uuid_v4(bytes))
}

/// Formats 16 random bytes as an RFC 9562 version 4 UUID.
fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

deno_core::extension!(
  crypto,
  deps = [deno_webidl, deno_web],
  ops = [op_crypto_get_random_values, op_crypto_random_uuid],
  esm = [dir "crypto", "ext:crypto/crypto.js" = "crypto.js"],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant_bits() {
        let uuid = format_uuid_v4([0xff; 16]);
        assert_eq!(uuid, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let uuid = format_uuid_v4([0; 16]);
        assert_eq!(uuid, "00000000-0000-4000-8000-000000000000");
    }
}
