//! `/`: sends a visitor to the sign-in page and a signed-in person to its role's main page;
//! `/home`: the main page of roles whose own pages are still to come.

use super::page::{self, Layout, PageResult};
use super::session::{MaybeSession, SignedIn};
use askama::Template;

pub async fn landing(MaybeSession(session): MaybeSession) -> PageResult {
    Ok(match session.and_then(|s| s.principal) {
        Some(principal) => page::see_other(super::landing_for(principal.role)),
        None => page::see_other("/sign-in"),
    })
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    layout: Layout,
    role: &'static str,
}

pub async fn home(SignedIn { session, principal }: SignedIn) -> PageResult {
    page::render(&HomePage {
        layout: Layout::signed_in("Home", &session, "/home"),
        role: page::role_label(principal.role),
    })
}
