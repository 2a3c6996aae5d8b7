//! (in progress)
use anyhow::Result;
pub fn run(_args: &[String]) -> Result<()> { anyhow::bail!("todo") }
