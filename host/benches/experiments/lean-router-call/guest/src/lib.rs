//! The routing logic of `plugins/routers/keyword` (first word, lower-cased, picks the app),
//! behind both records of `../wit/lean.wit`. See `../run.sh`.

wit_bindgen::generate!({ path: "../wit", world: "lean" });
struct G;
impl Guest for G {
    fn route_full(m: UserMessage, _from: String) -> Result<Vec<Target>, String> {
        let kw = m.content.as_deref().and_then(|c| c.split_whitespace().next()).map(str::to_lowercase);
        let app = match kw.as_deref() { Some("echo") => "echo_app", _ => "app" };
        Ok(vec![Target { connector: app.to_owned(), endpoint: None }])
    }
    fn route_inbound(info: RouteInfo, _from: String) -> Result<Vec<Target>, String> {
        let kw = info.content.as_deref().and_then(|c| c.split_whitespace().next()).map(str::to_lowercase);
        let app = match kw.as_deref() { Some("echo") => "echo_app", _ => "app" };
        Ok(vec![Target { connector: app.to_owned(), endpoint: None }])
    }
}
export!(G);
