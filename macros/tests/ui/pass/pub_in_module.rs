//! A `pub` handler inside a module, collected by path.
mod billing {
    use kafka_handler::{kafka_handler, Json};

    #[kafka_handler(topics = ["orders"], group = "billing")]
    pub async fn bill(order: Json<u64>) -> Result<(), std::io::Error> {
        let _ = *order;
        Ok(())
    }

    #[kafka_handler(topics = ["refunds"], group = "billing")]
    pub(crate) fn refund(_payload: &[u8]) {}
}

fn main() {
    let handlers = kafka_handler::handlers![billing::bill, billing::refund,];
    assert_eq!(
        handlers[0].name(),
        concat!(module_path!(), "::billing::bill")
    );
    assert_eq!(
        handlers[1].name(),
        concat!(module_path!(), "::billing::refund")
    );
}
