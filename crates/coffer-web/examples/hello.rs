//! The ceiling for Coffer's HTTP routes (`scripts/bench --only http`): a
//! bare axum handler answering `hello` on the same runtime settings as the
//! server (tokio's multi-threaded runtime, all cores), with no middleware.
//! Listens on 127.0.0.1, port 0, and prints `listening on http://ADDR`.

fn main() -> std::io::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        axum::serve(listener, app).await
    })
}
