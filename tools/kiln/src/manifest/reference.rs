//! Where an image comes from, as a manifest names it: a registry reference
//! (`linuxkit/init:v1.0`, normalised to `docker.io/linuxkit/init:v1.0`), a local OCI image layout
//! (`oci:PATH`), an OCI or `docker save` archive (`oci-archive:PATH`, `docker-archive:PATH`),
//! or a package of this workspace (`@pkg:PATH`, resolved by the build).
//! Runs in: `kiln` on the build host. Pure.

use std::str::FromStr;

use oci_spec::distribution::Reference;

/// A parsed image source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Registry(Reference),
    OciLayout(String),
    OciArchive(String),
    DockerArchive(String),
    Package(String),
}

const PATH_SCHEMES: [&str; 4] = ["oci:", "oci-archive:", "docker-archive:", "@pkg:"];

impl ImageSource {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty image reference".into());
        }
        for scheme in PATH_SCHEMES {
            if let Some(path) = text.strip_prefix(scheme) {
                if path.is_empty() {
                    return Err(format!("`{text}` names no path after `{scheme}`"));
                }
                let path = path.to_owned();
                return Ok(match scheme {
                    "oci:" => ImageSource::OciLayout(path),
                    "oci-archive:" => ImageSource::OciArchive(path),
                    "docker-archive:" => ImageSource::DockerArchive(path),
                    _ => ImageSource::Package(path),
                });
            }
        }
        Reference::from_str(text)
            .map(ImageSource::Registry)
            .map_err(|err| format!("`{text}` is not an image reference: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_normalise() {
        let ImageSource::Registry(reference) =
            ImageSource::parse("linuxkit/kernel:6.12.59").expect("valid")
        else {
            panic!("a registry reference");
        };
        assert_eq!(reference.registry(), "docker.io");
        assert_eq!(reference.repository(), "linuxkit/kernel");
        assert_eq!(reference.tag(), Some("6.12.59"));
        for (short, whole) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("linuxkit/init:v1.0", "docker.io/linuxkit/init:v1.0"),
            ("docker.io/library/alpine", "docker.io/library/alpine:latest"),
            ("localhost:5000/kiln/hello", "localhost:5000/kiln/hello:latest"),
            ("ghcr.io/org/image:tag", "ghcr.io/org/image:tag"),
            (
                "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ] {
            let ImageSource::Registry(reference) = ImageSource::parse(short).expect(short) else {
                panic!("{short} is a registry reference");
            };
            assert_eq!(reference.whole(), whole, "{short}");
        }
        for valid in [
            "alpine:3.20",
            "nginx:1.19.5-alpine",
            "busybox",
            "linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a",
            "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ImageSource::parse(valid).is_ok(), "{valid}");
        }
        assert_eq!(
            ImageSource::parse("@pkg:./pkg/init").expect("package"),
            ImageSource::Package("./pkg/init".into())
        );
        assert_eq!(
            ImageSource::parse("oci:/tmp/layout").expect("layout"),
            ImageSource::OciLayout("/tmp/layout".into())
        );
        for invalid in ["Alpine:3", "a b", "oci:", "x:y:z", ""] {
            assert!(ImageSource::parse(invalid).is_err(), "{invalid}");
        }
    }
}
