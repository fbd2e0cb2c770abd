//! `wattwise serve`: the local endpoint (SQLite) with the what-if and jobs page,
//! the page's files compiled into this binary when it was built with
//! `WATTWISE_WEB_DIST` (the wheel's is); `--web DIR` serves another copy.

use wattwise_lambda::local::{run as run_local, LocalArgs};
use wattwise_lambda::server::Web;

/// The page's files built into this binary (path under the page's root, content);
/// empty when it was built without `WATTWISE_WEB_DIST`.
pub static PAGE: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_page.rs"));

/// `wattwise serve`'s flags: the local server's.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    local: LocalArgs,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let page = (!PAGE.is_empty()).then_some(Web::Embedded(PAGE));
    if page.is_none() && args.local.web.is_none() {
        eprintln!(
            "wattwise serve: this build has no page built in (built without WATTWISE_WEB_DIST): \
             serving the API only; --web DIR serves a built page"
        );
    }
    run_local(args.local, page)?;
    Ok(())
}
