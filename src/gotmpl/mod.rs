//! Go's `text/template`, the part ESO's templates use, written here because the Rust ports
//! evaluated (gtmpl 0.7.1, gtmpl-ng 0.7.7) range over maps in hash order where Go sorts the
//! keys — a template ranging over a secret's fields would render differently on every poll, and
//! every poll would rewrite the Secret — and because templates are tenant input: this one has no
//! named templates (the one way to recurse), spends fuel on every step, caps its output, and
//! says what went wrong without ever quoting a value. docs/templates.md lists what is covered.

pub mod binary;
mod exec;
pub mod funcs;
mod jwk;
mod parse;
mod pkcs12;

use serde_json::Value;

/// What one template may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Steps (nodes, commands, range iterations).
    pub fuel: u64,
    /// Bytes of output.
    pub output: usize,
    /// Bytes of template text.
    pub template: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 200_000,
            output: 1024 * 1024,
            template: 64 * 1024,
        }
    }
}

/// A template's failure: the line and what is wrong, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl Error {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Error {
            line,
            message: message.into(),
        }
    }
}

/// Parses `text` without running it: the errors a template has whatever its data.
pub fn check(text: &str, limits: &Limits) -> Result<(), Error> {
    parsed(text, limits).map(|_| ())
}

fn parsed(text: &str, limits: &Limits) -> Result<Vec<parse::Node>, Error> {
    if text.len() > limits.template {
        return Err(Error::at(
            0,
            format!("the template is larger than {} bytes", limits.template),
        ));
    }
    parse::parse(text)
}

/// Renders `text` over `data` (`.`), within `limits`.
pub fn render(text: &str, data: &Value, limits: &Limits) -> Result<String, Error> {
    exec::Exec::run(&parsed(text, limits)?, data, limits)
}

#[cfg(test)]
mod tests;
