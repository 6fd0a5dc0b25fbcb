//! `sirocco lab up|down|status`: the veth lab from the command line.

use crate::cli::LabArgs;

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    anyhow::bail!("sirocco lab {:?}: the veth lab is being built", args.action)
}
