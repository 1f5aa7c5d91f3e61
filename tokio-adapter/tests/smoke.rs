mod common;
use common::*;
use microsocket_tokio::{Client, ServerConfig};

#[tokio::test]
async fn ping_over_unix_socket() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        let v = client.request("PING", [b""; 0]).await.unwrap();
        assert_eq!(v, [b"PONG"]);
        let v = client.request("ECHO", ["a", "bc"]).await.unwrap();
        assert_eq!(strings(&v), vec![b"a".to_vec(), b"bc".to_vec()]);
        server.shutdown().await;
        assert!(!path.exists());
    })
    .await;
}
