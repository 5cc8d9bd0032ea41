//! Text helpers shared by the bot definitions (checked at load) and the
//! engine (applied per turn): trigger matching and `{{ path }}` templates.

pub mod matcher;
pub mod template;
