//! Turning a `SecretSource` into a `Secret`: environment, file, command or
//! plain value. Commands run at most once per process per argv (a vault CLI
//! call is slow and may be rate limited), never through a shell.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::AuthError;
use crate::plan::SecretSource;
use crate::secret::Secret;

/// Resolve a secret and register it with the scrubber, so a server that
/// echoes it never puts it into a log or an error. Trailing newlines of
/// files and command output are trimmed (Kubernetes secret mounts, `vault
/// kv get` output).
pub fn resolve_secret(source: &SecretSource) -> Result<Secret, AuthError> {
    let secret = resolve(source)?;
    crate::secret::register(&secret);
    Ok(secret)
}

/// The values of a job's `{secret.*}` placeholders: each of `names`
/// resolved from `[secrets]` and registered with the scrubber. Err says
/// which could not be, and why (never the value).
pub fn resolve_named(
    sources: &std::collections::BTreeMap<String, SecretSource>,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, Secret>, String> {
    let mut values = std::collections::BTreeMap::new();
    for name in names {
        let source = sources
            .get(name)
            .ok_or_else(|| format!("secret \"{name}\" is not defined in [secrets]"))?;
        let value = resolve_secret(source).map_err(|err| format!("secret \"{name}\": {err}"))?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn resolve(source: &SecretSource) -> Result<Secret, AuthError> {
    match source {
        SecretSource::Plain(secret) => Ok(secret.clone()),
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(value) if value.is_empty() => Err(AuthError::EmptyEnv { name: name.clone() }),
            Ok(value) => Ok(Secret::new(value)),
            Err(_) => Err(AuthError::MissingEnv { name: name.clone() }),
        },
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::File {
                path: path.clone(),
                source,
            })?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(AuthError::EmptyFile { path: path.clone() });
            }
            Ok(Secret::new(value))
        }
        SecretSource::Command(argv) => run_command_once(argv),
    }
}

fn command_cache() -> &'static Mutex<HashMap<Vec<String>, Secret>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<String>, Secret>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn run_command_once(argv: &[String]) -> Result<Secret, AuthError> {
    let program = argv.first().cloned().unwrap_or_default();
    // Holding the lock while the command runs makes "once per process" hold
    // even when two credentials name the same command at the same time.
    let mut cache = command_cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(secret) = cache.get(argv) {
        return Ok(secret.clone());
    }
    let output = std::process::Command::new(&program)
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|source| AuthError::CommandStart {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(AuthError::CommandFailed {
            program,
            status: output.status.to_string(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value = text.trim();
    if value.is_empty() {
        return Err(AuthError::CommandEmpty { program });
    }
    let secret = Secret::new(value);
    cache.insert(argv.to_vec(), secret.clone());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_is_trimmed_of_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").unwrap();
        let secret = resolve_secret(&SecretSource::File(path)).unwrap();
        assert_eq!(secret.expose(), "abc");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = resolve_secret(&SecretSource::Env("APISYNC_TEST_SURELY_UNSET".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("APISYNC_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn command_output_is_the_secret_and_failures_hide_output() {
        let ok = resolve_secret(&SecretSource::Command(vec![
            "echo".into(),
            "from-vault".into(),
        ]))
        .unwrap();
        assert_eq!(ok.expose(), "from-vault");
        let err = resolve_secret(&SecretSource::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo leaked-value; exit 3".into(),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(!err.contains("leaked-value"), "{err}");
    }
}
