//! Whom to log in to a registry as: a `--registry-auth HOST=USER:PASSWORD` given on the
//! command line, else what `docker login` keeps in the Docker config (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`: its `auths`, or the credential helper it names), else nobody
//! (anonymous). Docker Hub goes by several names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`); they are one registry here.
//! Runs in: `kiln` on the build host. Reads the Docker config; may run its credential helper.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

/// A `--registry-auth HOST=USER:PASSWORD`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl FromStr for Login {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = "wants HOST=USER:PASSWORD (HOST as in the image reference, e.g. docker.io or localhost:5000)";
        let Some((registry, login)) = text.split_once('=') else {
            return Err(format!("`{text}` has no `=`: --registry-auth {wanted}"));
        };
        let Some((username, password)) = login.split_once(':') else {
            return Err(format!(
                "`{text}` has no `:` after the user: --registry-auth {wanted}"
            ));
        };
        if registry.is_empty() || username.is_empty() {
            return Err(format!(
                "`{text}` names no host or no user: --registry-auth {wanted}"
            ));
        }
        Ok(Self {
            registry: canonical(registry).to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// The credentials found for a registry, and the user they name (for error messages).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub auth: RegistryAuth,
    pub username: Option<String>,
    /// Where they come from: `--registry-auth` or the config file's path.
    pub origin: String,
}

impl Credentials {
    /// Whose login this is, for messages: "the login of `USER` (from ORIGIN)", or "an
    /// anonymous login" (the password is never named).
    pub fn login(&self) -> String {
        match &self.username {
            Some(user) => format!("the login of `{user}` (from {})", self.origin),
            None => "an anonymous login".to_owned(),
        }
    }
}

/// The credentials for `registry` (as a reference names it, e.g. `docker.io`).
pub fn for_registry(registry: &str, logins: &[Login]) -> Result<Credentials> {
    let registry = canonical(registry);
    if let Some(login) = logins.iter().find(|login| login.registry == registry) {
        return Ok(Credentials {
            auth: RegistryAuth::Basic(login.username.clone(), login.password.clone()),
            username: Some(login.username.clone()),
            origin: "--registry-auth".into(),
        });
    }
    let anonymous = Credentials {
        auth: RegistryAuth::Anonymous,
        username: None,
        origin: "nobody (anonymous)".into(),
    };
    let Some(path) = docker_config() else {
        return Ok(anonymous);
    };
    if !path.exists() {
        return Ok(anonymous);
    }
    let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    match docker_credential::get_credential_from_reader(BufReader::new(file), registry) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Credentials {
            auth: RegistryAuth::Basic(username.clone(), password),
            username: Some(username),
            origin: path.display().to_string(),
        }),
        Ok(DockerCredential::IdentityToken(_)) => bail!(
            "{} holds an identity token for {registry}; only user and password logins are \
             supported: give one with --registry-auth {registry}=USER:PASSWORD",
            path.display()
        ),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(anonymous),
        Err(err) => Err(anyhow::Error::new(err)).with_context(|| {
            format!(
                "cannot read the login for {registry} from {}",
                path.display()
            )
        }),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// One name for Docker Hub; other registries as written.
fn canonical(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "https://index.docker.io/v1/" => "docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_parse_and_docker_hub_has_one_name() {
        let login: Login = "index.docker.io=alice:pa:ss".parse().expect("valid");
        assert_eq!(login.registry, "docker.io");
        assert_eq!(login.username, "alice");
        assert_eq!(login.password, "pa:ss");
        assert!(!format!("{login:?}").contains("pa:ss"));
        let found = for_registry("registry-1.docker.io", std::slice::from_ref(&login))
            .expect("credentials");
        assert_eq!(found.username.as_deref(), Some("alice"));
        assert_eq!(found.origin, "--registry-auth");
        for bad in ["localhost:5000", "=alice:x", "host=alice", "host=:x"] {
            let error = bad.parse::<Login>().expect_err(bad);
            assert!(error.contains("HOST=USER:PASSWORD"), "{error}");
        }
    }
}
