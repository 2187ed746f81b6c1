//! Password hashing: argon2id at OWASP's parameters (m = 19456 KiB, t = 2,
//! p = 1), stored as PHC strings, so the parameters travel with each hash
//! and can be raised later without breaking old ones.

use crate::CryptoError;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::LazyLock;

/// Memory per hash, KiB (OWASP's minimum for argon2id).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None)
        .map_err(|_| CryptoError::UnknownFormat { what: "the argon2 parameters" })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh random 16-byte salt; returns the PHC
/// string. The steps of `argon2`'s own `PasswordHasher`, on the thread's
/// kept working memory (see [`MEMORY`]).
pub fn hash_password(password: &[u8]) -> Result<String, CryptoError> {
    fn bad<E>(_: E) -> CryptoError {
        CryptoError::UnknownFormat { what: "an argon2 hash" }
    }
    let salt = Salt::new(&crate::random_bytes::<{ Salt::RECOMMENDED_LENGTH }>()?).map_err(bad)?;
    let argon2 = argon2()?;
    let params = argon2.params().clone();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, &salt, &mut out, memory)
    })
    .map_err(bad)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(bad)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(bad)?),
    };
    Ok(hash.to_string())
}

thread_local! {
    /// This thread's argon2 working memory (19 MiB at our parameters), kept
    /// between verifications: allocating it afresh each time costs a page
    /// fault per 4 KiB on every sign-in, and the allocator keeps what was
    /// freed anyway. Zeroed by argon2 after each use (its `zeroize` feature).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Blocks (1 KiB each) of address space reserved for the working memory:
/// above glibc's largest mmap threshold (32 MiB), so the allocation is
/// always a mapping of its own, given back to the system when released,
/// never a piece of the heap the allocator keeps. Only the blocks used are
/// ever touched, so only they become resident.
const RESERVED_BLOCKS: usize = 33 * 1024;

/// Runs `work` on this thread's working memory of `blocks` blocks.
fn with_memory<T>(blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() != blocks {
            *memory = Vec::new();
            let mut fresh = Vec::with_capacity(blocks.max(RESERVED_BLOCKS));
            fresh.resize(blocks, Block::new());
            *memory = fresh;
        }
        work(&mut memory)
    })
}

/// Hands this thread's working memory back (a hashing thread gone idle).
pub fn release_hashing_memory() {
    MEMORY.with(|memory| {
        if let Ok(mut memory) = memory.try_borrow_mut() {
            *memory = Vec::new();
        }
    });
}

/// True when `password` matches the PHC string (false for a malformed one).
/// The same steps as `argon2`'s own `PasswordVerifier` (algorithm, version
/// and parameters from the string, its salt as it is, a constant-time
/// comparison of the outputs), on the thread's kept working memory.
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else { return false };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else { return false };
    let hashed = with_memory(blocks, |memory| argon2.hash_password_into_with_memory(password, salt, out, memory));
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(out).is_ok_and(|computed| computed == *expected)
}

/// A hash of a random password at the same parameters, made once.
static DUMMY: LazyLock<Option<String>> = LazyLock::new(|| {
    let random = crate::random_bytes::<32>().ok()?;
    hash_password(&random).ok()
});

/// Runs the same verification as for a real account, against a hash no
/// password matches: an unknown address costs what a known one costs, so
/// timing does not tell which addresses have accounts.
pub fn dummy_verify(password: &[u8]) {
    if let Some(dummy) = DUMMY.as_deref() {
        std::hint::black_box(verify_password(password, dummy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_carry_their_parameters_and_differ_by_salt() {
        let a = hash_password(b"correct horse battery staple").unwrap();
        let b = hash_password(b"correct horse battery staple").unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify_password(b"correct horse battery staple", &a));
        assert!(!verify_password(b"correct horse battery stapl", &a));
        assert!(!verify_password(b"anything", "not a phc string"));
        // argon2's own verifier agrees with ours.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(argon2().unwrap().verify_password(b"correct horse battery staple", &parsed).is_ok());
        assert!(argon2().unwrap().verify_password(b"correct horse battery stapl", &parsed).is_err());
        // A hash made elsewhere with other parameters still verifies: they
        // travel in the string.
        let light = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap());
        let other = light.hash_password(b"pw").unwrap().to_string();
        assert!(other.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{other}");
        assert!(verify_password(b"pw", &other) && !verify_password(b"pv", &other));
        release_hashing_memory();
        assert!(verify_password(b"correct horse battery staple", &a), "after the memory is handed back");
        // A tampered output, salt or parameter does not verify.
        let tampered = |from: &str, to: &str| a.replacen(from, to, 1);
        let last = a.chars().last().unwrap();
        let flipped = if last == 'A' { 'B' } else { 'A' };
        assert!(!verify_password(b"correct horse battery staple", &format!("{}{flipped}", &a[..a.len() - 1])));
        assert!(!verify_password(b"correct horse battery staple", &tampered("t=2", "t=3")));
        assert!(!verify_password(b"correct horse battery staple", &tampered("argon2id", "argon2i")));
    }

    #[test]
    fn dummy_verification_runs_the_real_work() {
        let started = std::time::Instant::now();
        dummy_verify(b"x");
        let _ = started.elapsed();
        assert!(DUMMY.as_deref().is_some_and(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
        assert!(!verify_password(b"x", DUMMY.as_deref().unwrap()));
    }
}
