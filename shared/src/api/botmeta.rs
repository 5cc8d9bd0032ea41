//! GET /api/botmeta/{streamId}: the name and icon Kore's client SDKs show
//! before the first message; and the icon the server draws for a bot that
//! names none, so a chat window never shows a broken image.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use http::{HeaderMap, Method, header};

use super::{Routes, WebhookState, authenticate, every_app};
use crate::definition::Bot;
use crate::error::Result;
use crate::protocol::BotMeta;

pub fn router(state: WebhookState) -> Routes {
    Routes::new()
        .add(Method::GET, "/api/botmeta/{bot_id}", botmeta)
        .add(Method::GET, "/api/botmeta/{bot_id}/icon", icon)
        .with_state(state)
}

async fn botmeta(
    State(state): State<WebhookState>,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<BotMeta>> {
    let bot = state.bots.require(&bot_id)?;
    authenticate(&*state.seen_tokens, &bot, &every_app(&bot), &headers).await?;
    Ok(Json(BotMeta { name: bot.def.name.clone(), icon: Some(icon_url(&bot, &headers)) }))
}

/// The bot's icon: its own, or the one this server draws, addressed as the
/// client reached this server (an `<img>` resolves a relative URL against
/// the page, not the API).
pub fn icon_url(bot: &Bot, headers: &HeaderMap) -> String {
    if let Some(icon) = &bot.def.icon {
        return icon.clone();
    }
    let path = format!("/api/botmeta/{}/icon", bot.id());
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host =
        text("host").filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    // API Gateway says how the client called; a direct caller of the local server used plain HTTP.
    let scheme = match text("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    match host {
        Some(host) => format!("{scheme}://{host}{path}"),
        None => path,
    }
}

/// The bot's initial on a disc: public (an `<img>` sends no token), and
/// naming nothing but what botmeta tells.
async fn icon(State(state): State<WebhookState>, Path(bot_id): Path<String>) -> Result<impl IntoResponse> {
    let bot = state.bots.require(&bot_id)?;
    let initial = bot.def.name.chars().find(|c| c.is_alphanumeric()).map_or('?', |c| c.to_ascii_uppercase());
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><circle cx="32" cy="32" r="32" fill="#3557c5"/><text x="32" y="43" font-family="Helvetica, Arial, sans-serif" font-size="30" font-weight="600" text-anchor="middle" fill="#fff">{initial}</text></svg>"##
    );
    let headers = [
        (header::CONTENT_TYPE, "image/svg+xml"),
        (header::CACHE_CONTROL, "public, max-age=86400"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
    ];
    Ok((headers, svg))
}
