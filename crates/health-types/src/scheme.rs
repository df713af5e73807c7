//! The URL schemes the toolkit checks ([`Scheme`]): the one place that lists them.

use std::str::FromStr;

use url::Url;

use crate::ConfigError;

/// A target URL's scheme: which probe checks it.
///
/// Every list of supported schemes (in error messages, in the agent protocol, in the
/// docs) comes from [`Scheme::ALL`], so adding one is one variant here and one arm in
/// the probe builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://`.
    Http,
    /// `https://` (HTTP/2 by ALPN when offered).
    Https,
    /// `h2c://`: HTTP/2 with prior knowledge over cleartext.
    H2c,
    /// `tcp://host:port`.
    Tcp,
    /// `tcp4://host:port`: IPv4 only.
    Tcp4,
    /// `tcp6://host:port`: IPv6 only.
    Tcp6,
    /// `udp://host:port`.
    Udp,
    /// `udp4://host:port`: IPv4 only.
    Udp4,
    /// `udp6://host:port`: IPv6 only.
    Udp6,
    /// `file:///path`: a file server's root.
    File,
    /// `dns://<resolver:port>/<name>?type=A&expect=<regex>&rcode=NOERROR`: one DNS query
    /// (SPEC §9.4).
    Dns,
    /// `icmp://<host>`: an echo request on an unprivileged ping socket.
    Icmp,
    /// `grpc://host:port[/service]`: the gRPC health protocol v1 over cleartext HTTP/2.
    Grpc,
    /// `grpcs://host:port[/service]`: the same over TLS.
    Grpcs,
}

impl Scheme {
    /// Every scheme, in the order error messages list them.
    pub const ALL: [Scheme; 14] = [
        Scheme::Http,
        Scheme::Https,
        Scheme::H2c,
        Scheme::Tcp,
        Scheme::Tcp4,
        Scheme::Tcp6,
        Scheme::Udp,
        Scheme::Udp4,
        Scheme::Udp6,
        Scheme::File,
        Scheme::Dns,
        Scheme::Icmp,
        Scheme::Grpc,
        Scheme::Grpcs,
    ];

    /// The schemes of HTTP targets (`http`, `https`, `h2c`): the first three of
    /// [`ALL`](Self::ALL).
    pub const HTTP: &[Scheme] = Scheme::ALL.split_at(3).0;

    /// The stream schemes (`tcp`, `udp` and their `4`/`6` forms): the six after
    /// [`HTTP`](Self::HTTP).
    pub const STREAM: &[Scheme] = Scheme::ALL.split_at(3).1.split_at(6).0;

    /// The scheme of `url`, or the error listing every supported one.
    pub fn of(url: &Url) -> Result<Scheme, ConfigError> {
        Scheme::of_among(url, &Scheme::ALL)
    }

    /// The scheme of `url` when it is one of `supported`, or the error listing them.
    pub fn of_among(url: &Url, supported: &[Scheme]) -> Result<Scheme, ConfigError> {
        url.scheme()
            .parse::<Scheme>()
            .ok()
            .filter(|scheme| supported.contains(scheme))
            .ok_or_else(|| unsupported_scheme(url, supported))
    }

    /// `http`, `https` or `h2c`.
    pub const fn is_http(self) -> bool {
        matches!(self, Scheme::Http | Scheme::Https | Scheme::H2c)
    }

    /// `udp`, `udp4` or `udp6`.
    pub const fn is_udp(self) -> bool {
        matches!(self, Scheme::Udp | Scheme::Udp4 | Scheme::Udp6)
    }

    /// One of the six [stream](Self::STREAM) schemes.
    pub const fn is_stream(self) -> bool {
        matches!(
            self,
            Scheme::Tcp | Scheme::Tcp4 | Scheme::Tcp6 | Scheme::Udp | Scheme::Udp4 | Scheme::Udp6
        )
    }

    /// `grpc` or `grpcs`.
    pub const fn is_grpc(self) -> bool {
        matches!(self, Scheme::Grpc | Scheme::Grpcs)
    }
}

crate::util::wire_names! {
    /// The scheme as written in a URL.
    Scheme {
        Http => "http",
        Https => "https",
        H2c => "h2c",
        Tcp => "tcp",
        Tcp4 => "tcp4",
        Tcp6 => "tcp6",
        Udp => "udp",
        Udp4 => "udp4",
        Udp6 => "udp6",
        File => "file",
        Dns => "dns",
        Icmp => "icmp",
        Grpc => "grpc",
        Grpcs => "grpcs",
    }
}

/// The scheme is not one of [`Scheme::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheme {0:?}")]
pub struct UnknownScheme(String);

impl FromStr for Scheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::from_wire_name(s).ok_or_else(|| UnknownScheme(s.to_owned()))
    }
}

/// The one wording of "this scheme is not checked here":
/// `invalid url "ftp://x": unsupported scheme "ftp"; supported schemes: http, https`.
pub fn unsupported_scheme(url: &Url, supported: &[Scheme]) -> ConfigError {
    ConfigError::url(url, unsupported_reason(url.scheme(), supported))
}

/// The reason part of [`unsupported_scheme`], for a scheme given without a URL (the
/// agent protocol's `scheme=` parameter).
pub fn unsupported_reason(scheme: &str, supported: &[Scheme]) -> String {
    let mut reason = format!("unsupported scheme {scheme:?}; supported schemes: ");
    for (i, s) in supported.iter().enumerate() {
        if i > 0 {
            reason.push_str(", ");
        }
        reason.push_str(s.as_str());
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_round_trips_and_others_list_the_supported_ones() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.as_str().parse::<Scheme>(), Ok(scheme));
        }
        let url = Url::parse("gopher://h/").unwrap();
        let err = Scheme::of(&url).unwrap_err().to_string();
        assert!(
            err.contains("\"gopher\"")
                && err.contains("supported schemes: http, https, h2c, tcp, tcp4, tcp6"),
            "{err}"
        );
        let url = Url::parse("https://h/").unwrap();
        let err = Scheme::of_among(&url, &[Scheme::H2c])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("supported schemes: h2c"), "{err}");
    }

    #[test]
    fn families_are_grouped() {
        assert_eq!(Scheme::STREAM.len(), 6);
        assert!(Scheme::STREAM.iter().all(|s| s.is_stream() && !s.is_http()));
        assert!(Scheme::HTTP.iter().all(|s| s.is_http()));
        assert_eq!(Scheme::ALL.iter().filter(|s| s.is_udp()).count(), 3);
        assert_eq!(Scheme::ALL.iter().filter(|s| s.is_stream()).count(), 6);
        assert_eq!(Scheme::ALL.iter().filter(|s| s.is_grpc()).count(), 2);
    }
}
