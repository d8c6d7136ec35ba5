//! Randomness for secrets and ids: the OS CSPRNG, never a userspace PRNG.

/// The OS random number generator failed; nothing was made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessError;

/// Fills `buf` from the OS CSPRNG (getrandom).
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomnessError> {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(|_| RandomnessError)
}
