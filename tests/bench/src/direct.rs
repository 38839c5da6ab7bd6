//! The baseline: the same streams consumed with aws-sdk-bedrockruntime directly, in tasks on a
//! runtime like the plugin's (2 workers), with no plugin, no JSON and no callback.

use aws_sdk_bedrockruntime::config::{Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_sdk_bedrockruntime::Client;

pub struct Direct {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
}

/// What one directly consumed stream saw (times from `crate::now_ns`).
#[derive(Default)]
pub struct Seen {
    pub events: u64,
    pub first_ns: u64,
    pub done_ns: u64,
    pub gaps: Vec<u32>,
}

impl Direct {
    pub fn new(endpoint: &str) -> Direct {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("direct-sdk").enable_all().build().unwrap();
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(crate::ACCESS_KEY, crate::SECRET_KEY, None, None, "bench"))
            .endpoint_url(endpoint)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Direct { rt, client: Client::from_conf(config) }
    }
}

pub async fn stream(client: Client, deltas: usize, record_gaps: bool) -> Seen {
    let message = Message::builder().role(ConversationRole::User).content(ContentBlock::Text("go".into())).build().unwrap();
    let output = client.converse_stream().model_id(format!("bench-{deltas}")).messages(message).send().await.expect("ConverseStream");
    let mut stream = output.stream;
    let mut seen = Seen::default();
    let mut last = 0;
    while let Some(_event) = stream.recv().await.expect("an event") {
        let now = crate::now_ns();
        if seen.events == 0 {
            seen.first_ns = now;
        } else if record_gaps {
            seen.gaps.push(((now - last) / 1000) as u32);
        }
        last = now;
        seen.events += 1;
    }
    seen.done_ns = crate::now_ns();
    seen
}
