//! Settings from the environment, read once at start, and what can be wrong
//! with the environment a process starts in.

use std::time::Duration;

use crate::api::HttpSettings;
use crate::app::files::FileLimits;
use crate::app::worker::WorkerSettings;
use crate::definition::LoadError;

/// Why a process could not start.
#[derive(thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("{name} must be a whole number, got {value:?}")]
    NotANumber { name: &'static str, value: String },
    /// Zero would refuse every file or expire it at once.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("bot definitions are not valid:\n{0}")]
    Definitions(#[from] LoadError),
    #[error("reading the bot definitions in {location}: {reason}")]
    DefinitionsUnreadable { location: String, reason: String },
    #[error("{name} must be one of {allowed}, got {value:?}")]
    NotOneOf { name: &'static str, allowed: &'static str, value: String },
}

/// As its message: a function's `main` returns it, and a returned error is
/// printed with `Debug` (the cold start's log line a reader sees).
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Every setting a process reads from the environment, by the part that owns it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub files: FileLimits,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// The settings from `var` (the environment, or a test's map).
    fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            var(name)
                .map(|v| v.trim().parse().map_err(|_| ConfigError::NotANumber { name, value: v.clone() }))
                .transpose()
        };
        let positive = |name: &'static str| match number(name)? {
            Some(0) => Err(ConfigError::Zero(name)),
            other => Ok(other),
        };
        if let Some(bytes) = number("HOOKLINE_MAX_BODY_BYTES")? {
            settings.http.max_body_bytes = bytes as usize;
        }
        if let Some(ms) = number("HOOKLINE_SYNC_DEADLINE_MS")? {
            settings.http.sync_deadline = Duration::from_millis(ms);
        }
        if let Some(origins) = var("HOOKLINE_CORS_ORIGINS") {
            settings.http.cors_origins =
                origins.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
        }
        if let Some(ms) = number("HOOKLINE_RETRY_BASE_MS")? {
            settings.worker.retry_base = Duration::from_millis(ms);
        }
        if let Some(ms) = number("HOOKLINE_WORKER_DEADLINE_MS")? {
            settings.worker.turn_deadline = Duration::from_millis(ms);
        }
        if let Some(bytes) = positive("HOOKLINE_MAX_FILE_BYTES")? {
            settings.files.max_file_bytes = bytes;
        }
        if let Some(bytes) = positive("HOOKLINE_MAX_UPLOAD_BYTES")? {
            settings.files.max_upload_bytes = bytes as usize;
        }
        if let Some(secs) = positive("HOOKLINE_UPLOAD_TOKEN_SECS")? {
            settings.files.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(days) = positive("HOOKLINE_FILE_RETENTION_DAYS")? {
            settings.files.retention = Duration::from_secs(days.saturating_mul(86_400));
        }
        if let Some(uploads) = number("HOOKLINE_UPLOADS_PER_HOUR")? {
            settings.files.uploads_per_hour = u32::try_from(uploads).unwrap_or(u32::MAX);
        }
        if let Some(bytes) = number("HOOKLINE_UPLOAD_BYTES_PER_HOUR")? {
            settings.files.upload_bytes_per_hour = bytes;
        }
        if let Some(types) = var("HOOKLINE_FILE_TYPES") {
            let types: Vec<String> = types
                .split(',')
                .map(|t| t.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            // Empty (as a template parameter left blank): the default list.
            if !types.is_empty() {
                settings.files.extensions = types;
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(&|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn each_part_gets_its_settings() {
        let settings = from(&[
            ("HOOKLINE_SYNC_DEADLINE_MS", "2500"),
            ("HOOKLINE_RETRY_BASE_MS", " 100 "),
            ("HOOKLINE_FILE_TYPES", ".PDF, png,"),
            ("HOOKLINE_CORS_ORIGINS", "https://a.example, https://b.example"),
        ])
        .unwrap();
        assert_eq!(settings.http.sync_deadline, Duration::from_millis(2500));
        assert_eq!(settings.http.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(settings.worker.retry_base, Duration::from_millis(100));
        assert_eq!(settings.files.extensions, ["pdf", "png"]);
        assert_eq!(settings.http.max_body_bytes, HttpSettings::default().max_body_bytes);
    }

    #[test]
    fn bad_values_say_which_variable() {
        let error = from(&[("HOOKLINE_MAX_BODY_BYTES", "64k")]).unwrap_err();
        assert_eq!(error.to_string(), r#"HOOKLINE_MAX_BODY_BYTES must be a whole number, got "64k""#);
        let error = from(&[("HOOKLINE_MAX_FILE_BYTES", "0")]).unwrap_err();
        assert_eq!(error.to_string(), "HOOKLINE_MAX_FILE_BYTES must be at least 1");
    }
}
