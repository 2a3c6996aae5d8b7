//! Port lists as users write them (`9000,9100-9110`): the CLI, the control protocol and the
//! rules all take this one type.

use std::str::FromStr;

/// A sorted, deduplicated set of ports, parsed from `9000,9100-9110`. Port 0 is refused: it
/// cannot be steered (and nothing may answer from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

impl FromStr for PortList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut ports = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("empty entry in port list {s:?}"));
            }
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let p = |x: &str| -> Result<u16, String> {
                match x.trim().parse::<u16>() {
                    Ok(0) => Err("port 0 cannot be steered".into()),
                    Ok(v) => Ok(v),
                    Err(_) => Err(format!("{x:?} is not a port (1-65535)")),
                }
            };
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                return Err(format!("port range {part:?} runs backwards"));
            }
            ports.extend(a..=b);
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(PortList(ports))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn port_lists() {
        assert_eq!("9000".parse::<PortList>().unwrap().0, vec![9000]);
        assert_eq!(
            "7, 9000-9002,7".parse::<PortList>().unwrap().0,
            vec![7, 9000, 9001, 9002]
        );
        assert_eq!("1-65535".parse::<PortList>().unwrap().0.len(), 65535);
        assert!("0".parse::<PortList>().unwrap_err().contains("port 0"));
        assert!(
            "70000"
                .parse::<PortList>()
                .unwrap_err()
                .contains("not a port")
        );
        assert!("9-3".parse::<PortList>().unwrap_err().contains("backwards"));
        assert!("1,,2".parse::<PortList>().unwrap_err().contains("empty"));
    }
}
