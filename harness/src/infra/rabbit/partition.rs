//! A network partition inside a private cluster, made with iptables on loopback: every member
//! sends its inter-node (distribution) traffic from its own loopback address, so rules that
//! reset the TCP connections between one member's address and distribution port and the
//! others' cut that member off while clients (and the CLI, from 127.0.0.1) still reach every
//! node. Needs root and the `iptables` package; the rules carry a comment naming the run so
//! a heal removes exactly them.

use std::net::Ipv4Addr;

use super::{Node, RabbitError};

/// The member `isolated` against the `others`: the iptables rule specs (OUTPUT chain) that cut
/// it off, each one direction of one kind of connection.
pub fn rules(
    isolated: &Node,
    others: &[&Node],
    tag: &str,
) -> Result<Vec<Vec<String>>, RabbitError> {
    let source = |n: &Node| {
        n.dist_source().ok_or_else(|| {
            RabbitError::Cluster(format!("{} has no distribution source address", n.name()))
        })
    };
    let k = source(isolated)?;
    let dk = isolated.dist_port().to_string();
    let mut out = Vec::new();
    for other in others {
        let (j, dj) = (source(other)?, other.dist_port().to_string());
        // Its connections to the other, both ways; the other's connections to it, both ways.
        out.push(spec(&[("-s", k)], &["--dport", &dj], tag));
        out.push(spec(&[("-d", k)], &["--sport", &dj], tag));
        out.push(spec(&[("-s", j)], &["--dport", &dk], tag));
        out.push(spec(&[("-d", j)], &["--sport", &dk], tag));
    }
    Ok(out)
}

fn spec(addr: &[(&str, Ipv4Addr)], port: &[&str], tag: &str) -> Vec<String> {
    let mut s: Vec<String> = vec!["OUTPUT".into()];
    for (flag, ip) in addr {
        s.extend([flag.to_string(), ip.to_string()]);
    }
    s.extend(["-p", "tcp"].map(String::from));
    s.extend(port.iter().map(|p| p.to_string()));
    s.extend(
        [
            "-m",
            "comment",
            "--comment",
            tag,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]
        .map(String::from),
    );
    s
}

/// Adds (`-A`) or deletes (`-D`) one rule.
pub async fn iptables(action: &str, rule: &[String]) -> Result<(), RabbitError> {
    let out = tokio::process::Command::new("iptables")
        .arg(action)
        .args(rule)
        .output()
        .await
        .map_err(|e| {
            RabbitError::Cluster(format!(
                "partitions need iptables (Debian package `iptables`) and root: {e}"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RabbitError::Cluster(format!(
            "iptables {action} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_resets_one_direction_of_one_connection_kind() {
        let r = spec(
            &[("-s", Ipv4Addr::new(127, 0, 0, 13))],
            &["--dport", "25672"],
            "t",
        );
        assert_eq!(
            r.join(" "),
            "OUTPUT -s 127.0.0.13 -p tcp --dport 25672 -m comment --comment t -j REJECT \
             --reject-with tcp-reset"
        );
    }
}
