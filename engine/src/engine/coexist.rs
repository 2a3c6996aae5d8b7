//! Living beside other XDP programs (issue 12): when the kernel refuses sluice's bpf_link
//! because another program holds the interface, say which program, how it is attached, and
//! what to do, in one line.
//!
//! Owns the explanation only. It never detaches, replaces or touches the other program — the
//! kernel already refused our attach, and the other program keeps running — and it never
//! decides anything: the engine stops with the error either way.
//!
//! libxdp's dispatcher (several programs on one interface, chained by run priority) is
//! recognised and named, but sluice does not join it: libxdp's protocol needs `freplace`
//! programs, which this project could not exercise (on the development VM libxdp's own
//! compatibility check for `freplace` fails with `EPERM`, so xdp-filter loads without a
//! dispatcher), and untested code for it is not shipped.

use crate::control::{link, netlink::Netlink};
use crate::steer::{self, SteerError};

/// `err` made into [`SteerError::Occupied`] when it is the kernel refusing our attach because
/// another program holds the interface; any other error is returned as it was.
pub(super) fn explain(err: SteerError) -> SteerError {
    let Some(iface) = err.occupied_iface().map(str::to_owned) else {
        return err;
    };
    let attachment = Netlink::open()
        .and_then(|mut nl| link::xdp_attachment(&mut nl, &iface))
        .ok()
        .flatten();
    let Some(att) = attachment else {
        // Gone since (or unreadable): the kernel's own reason is the best we have.
        return err;
    };
    let facts = steer::program_facts(att.prog_id);
    let (holder, advice) = describe(&iface, att, &facts);
    SteerError::Occupied {
        iface,
        holder,
        advice,
    }
}

/// The holder and the advice, as words.
fn describe(
    iface: &str,
    att: link::XdpAttachment,
    facts: &steer::ProgramFacts,
) -> (String, String) {
    let name = match &facts.name {
        Some(n) => format!("`{n}`"),
        None => "a program (name unknown: listing programs needs CAP_SYS_ADMIN)".into(),
    };
    let dispatcher = facts.name.as_deref() == Some(steer::LIBXDP_DISPATCHER);
    let via = match facts.links.as_slice() {
        [] if facts.name.is_some() => "attached through netlink".to_string(),
        [] => "attachment kind unknown".to_string(),
        ids => format!(
            "held by bpf_link {}",
            ids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let holder = format!(
        "{name} (id {}, {} mode, {via}, {})",
        att.prog_id,
        att.mode,
        if dispatcher {
            "a libxdp dispatcher"
        } else {
            "not a libxdp dispatcher"
        }
    );
    let advice = if dispatcher {
        format!(
            "sluice does not join libxdp's dispatcher; see its programs with `xdp-loader status \
             {iface}` and unload them (`xdp-loader unload {iface} --all`) to run sluice here, \
             or use another interface"
        )
    } else if !facts.links.is_empty() {
        format!(
            "a bpf_link goes away with the process that holds it: stop that program (`bpftool \
             link show` names it) to run sluice on {iface}, or use another interface"
        )
    } else {
        format!(
            "unload it with the tool that loaded it (`xdp-filter unload {iface}`, `xdp-loader \
             unload {iface} --all`, or `ip link set dev {iface} xdp off`) to run sluice here, \
             or use another interface"
        )
    };
    (holder, advice)
}

#[cfg(test)]
mod test {
    use super::*;

    fn facts(name: Option<&str>, links: &[u32]) -> steer::ProgramFacts {
        steer::ProgramFacts {
            name: name.map(str::to_owned),
            links: links.to_vec(),
        }
    }

    #[test]
    fn the_holder_is_named_with_mode_id_and_dispatcher() {
        let att = link::XdpAttachment {
            mode: "driver",
            prog_id: 42,
        };
        let (h, a) = describe("eth0", att, &facts(Some("xdpfilt_alw_all"), &[]));
        assert_eq!(
            h,
            "`xdpfilt_alw_all` (id 42, driver mode, attached through netlink, not a libxdp dispatcher)"
        );
        assert!(a.contains("xdp-filter unload eth0"), "{a}");
        let (h, a) = describe("eth0", att, &facts(Some("xdp_dispatcher"), &[]));
        assert!(h.ends_with(", a libxdp dispatcher)"), "{h}");
        assert!(a.contains("xdp-loader unload eth0 --all"), "{a}");
        let (h, a) = describe("eth0", att, &facts(Some("steer"), &[7]));
        assert!(h.contains("held by bpf_link 7"), "{h}");
        assert!(a.contains("stop that program"), "{a}");
        let (h, _) = describe("eth0", att, &facts(None, &[]));
        assert!(h.contains("name unknown"), "{h}");
        let e = SteerError::Occupied {
            iface: "eth0".into(),
            holder: h,
            advice: a,
        };
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}
