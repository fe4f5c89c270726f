#![forbid(unsafe_code)]

use vault_external_secrets::{config::Config, controller, logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    logging::init(&config.log_level, &config.log_message_key)?;
    controller::run(config).await
}
