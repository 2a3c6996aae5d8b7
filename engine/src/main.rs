//! The `sluice` binary: parse the command line, run, report errors as one clear line.

use sluice::apps::dns::app::Dns;
use sluice::apps::forward::{Forward, IcmpLimit, PortInfo};
use sluice::apps::lb::{Lb, LbParts};
use sluice::apps::{App, drop::DropAll, patch::Patch, reflect::Reflect};
use sluice::cli::{AppKind, Command, ParseError};
use sluice::config::EngineConfig;
use sluice::engine::{AppContext, Engine, RunError};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() -> ExitCode {
    let cli = match sluice::cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("sluice: error: {}", sluice::error::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match cli.command {
        Command::Ctl(args) => ExitCode::from(sluice::cli::ctl::run(&args).clamp(0, 255) as u8),
        Command::CheckConfig(args) => match check_config(&args.file) {
            Ok(what) => {
                println!("{}: ok: {what}", args.file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice: error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let result = EngineConfig::try_from(&args)
                .map_err(RunError::from)
                .and_then(|cfg| {
                    let icmp = IcmpLimit {
                        per_sec: args.icmp_rate,
                        burst: args.icmp_burst,
                    };
                    let stdout = std::io::stdout();
                    let make = |ctx: &AppContext<'_>| make_app(args.app, ctx, icmp);
                    run(&cfg, make, &mut stdout.lock())
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

/// `sluice::engine::run`, plus systemd's readiness notification once the engine has started
/// (program attached, sockets bound, workers and control socket up): `Type=notify` units
/// order what depends on sluice after that point.
fn run(
    cfg: &EngineConfig,
    make: impl FnMut(&AppContext<'_>) -> Box<dyn App>,
    out: &mut dyn std::io::Write,
) -> Result<sluice::engine::Summary, RunError> {
    // Handlers before start-up, as `engine::run` does: a signal during start-up stops the
    // engine as soon as it runs instead of killing the process half-way.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).map_err(RunError::Signals)?;
    }
    // SIGHUP is `systemctl reload`: the lb and dns apps re-read their files on it (the engine
    // registers that); for every other app it must not be the default action, which kills.
    signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        Arc::new(AtomicBool::new(false)),
    )
    .map_err(RunError::Signals)?;
    let engine = Engine::start_with_stop(cfg, make, term)?;
    match sluice::notify::notify(&format!(
        "READY=1\nSTATUS=serving {}",
        cfg.ifaces.join(", ")
    )) {
        Ok(true) => log::info!("told systemd we are ready (READY=1)"),
        Ok(false) => {}
        Err(e) => log::error!("telling systemd we are ready ($NOTIFY_SOCKET): {e}"),
    }
    engine.run(out)
}

/// `sluice check-config FILE`: everything `sluice run --config FILE` would check before it
/// touches the host — every key and value, the settings together, the lb file and zone files
/// named — and a one-line summary of what it would run.
fn check_config(file: &Path) -> anyhow::Result<String> {
    let argv = [
        "sluice".as_ref(),
        "run".as_ref(),
        "--config".as_ref(),
        file.as_os_str(),
    ];
    let args = match sluice::cli::parse_from(argv)
        .map_err(|e| anyhow::anyhow!(sluice::error::chain(&e)))?
        .command
    {
        Command::Run(args) => args,
        _ => unreachable!("parsed as run"),
    };
    let cfg = EngineConfig::try_from(&args)?;
    if let Some(lb) = &cfg.lb {
        sluice::apps::lb::config::LbConfig::from_file(lb)
            .map_err(|e| anyhow::anyhow!(sluice::error::chain(&e)))?;
    }
    if !cfg.dns.is_empty() {
        let files: Vec<_> = cfg.dns.iter().cloned().map(Into::into).collect();
        sluice::apps::dns::zone::Zones::load(&files)
            .map_err(|e| anyhow::anyhow!(sluice::error::chain(&e)))?;
    }
    Ok(format!(
        "app {} on {}, queues {}, {} steering rule(s)",
        args.app,
        cfg.ifaces.join(", "),
        cfg.queues,
        cfg.rules.len()
    ))
}

/// The app `--app` names, boxed so one worker type serves every choice.
fn make_app(kind: AppKind, ctx: &AppContext<'_>, icmp: IcmpLimit) -> Box<dyn App> {
    match kind {
        AppKind::Reflect => Box::new(Reflect::with_broadcasts(ctx.broadcasts.clone())),
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
            Box::new(
                Dns::new(dns.zones.clone(), mtu, dns.stats).with_broadcasts(ctx.broadcasts.clone()),
            )
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
