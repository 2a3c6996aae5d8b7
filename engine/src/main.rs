//! The `sluice` binary: parse the command line, run, report errors as one clear line.

use clap::Parser;
use sluice::apps::dns::app::Dns;
use sluice::apps::forward::{Forward, IcmpLimit, PortInfo};
use sluice::apps::lb::{Lb, LbParts};
use sluice::apps::{App, drop::DropAll, patch::Patch, reflect::Reflect};
use sluice::cli::{AppKind, Cli, Command};
use sluice::config::EngineConfig;
use sluice::engine::AppContext;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match cli.command {
        Command::Ctl(args) => ExitCode::from(sluice::cli::ctl::run(&args).clamp(0, 255) as u8),
        Command::Run(args) => {
            let result = EngineConfig::try_from(&args)
                .map_err(sluice::engine::RunError::from)
                .and_then(|cfg| {
                    let icmp = IcmpLimit {
                        per_sec: args.icmp_rate,
                        burst: args.icmp_burst,
                    };
                    let stdout = std::io::stdout();
                    let make = |ctx: &AppContext<'_>| make_app(args.app, ctx, icmp);
                    sluice::engine::run(&cfg, make, &mut stdout.lock())
                });
            match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice: error: {}", sluice::error::chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The app `--app` names, boxed so one worker type serves every choice.
fn make_app(kind: AppKind, ctx: &AppContext<'_>, icmp: IcmpLimit) -> Box<dyn App> {
    match kind {
        AppKind::Reflect => Box::new(Reflect::new()),
        AppKind::Drop => Box::new(DropAll::new()),
        AppKind::Patch => Box::new(Patch::new(ctx.ports.len() as u16)),
        AppKind::Forward => {
            let fib = ctx
                .fib
                .cloned()
                .expect("the engine keeps a forwarding table when it forwards");
            let ports = ctx.ports.iter().map(|p| PortInfo::new(p.ifindex)).collect();
            Box::new(Forward::new(fib, ports, icmp))
        }
        AppKind::Dns => {
            let dns = ctx
                .dns
                .clone()
                .expect("the engine loads the zones when it answers DNS");
            let mtu = ctx.ports.first().map_or(1500, |p| p.mtu);
            Box::new(Dns::new(dns.zones.clone(), mtu, dns.stats))
        }
        AppKind::Lb => {
            let lb = ctx
                .lb
                .clone()
                .expect("the engine keeps the balancer's table when it load-balances");
            let fib = ctx
                .fib
                .cloned()
                .expect("the engine keeps a forwarding table when it load-balances");
            Box::new(Lb::new(LbParts {
                table: lb.table.clone(),
                fib,
                ports: ctx.ports.iter().map(|p| PortInfo::new(p.ifindex)).collect(),
                conntrack: lb.conntrack,
                icmp,
                stats: lb.stats,
            }))
        }
    }
}
