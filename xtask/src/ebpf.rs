//! (in progress)
use anyhow::Result;
pub fn build() -> Result<()> { anyhow::bail!("todo") }
pub fn check() -> Result<()> { anyhow::bail!("todo") }
