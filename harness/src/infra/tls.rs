//! A throwaway certificate authority for brokers that speak TLS in a run: a CA and a server
//! certificate for 127.0.0.1 and localhost, written as PEM files, and the `rabbitmq.conf`
//! lines of a TLS listener that uses them.

use std::{
    io,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The PEM files of a test PKI, in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Makes a CA and a server certificate signed by it, valid for `127.0.0.1` and `localhost`.
    pub fn create(dir: &Path) -> io::Result<TestPki> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::new()).map_err(io::Error::other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rmq-harness test CA");
        let ca_key = KeyPair::generate().map_err(io::Error::other)?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(io::Error::other)?;

        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(io::Error::other)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let cert = params.signed_by(&key, &ca).map_err(io::Error::other)?;

        let pki = TestPki {
            dir: dir.to_path_buf(),
        };
        std::fs::write(pki.ca_file(), ca.as_ref().pem())?;
        std::fs::write(pki.cert_file(), cert.pem())?;
        std::fs::write(pki.key_file(), key.serialize_pem())?;
        Ok(pki)
    }

    /// The CA certificate a client must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// `rabbitmq.conf` lines for a TLS listener on 127.0.0.1:`port` that asks clients for no
    /// certificate (for [`crate::infra::rabbit::NodeOptions::config`]).
    pub fn rabbitmq_listener(&self, port: u16) -> Vec<String> {
        vec![
            format!("listeners.ssl.1 = 127.0.0.1:{port}"),
            format!("ssl_options.cacertfile = {}", self.ca_file().display()),
            format!("ssl_options.certfile = {}", self.cert_file().display()),
            format!("ssl_options.keyfile = {}", self.key_file().display()),
            "ssl_options.verify = verify_none".into(),
            "ssl_options.fail_if_no_peer_cert = false".into(),
        ]
    }
}
