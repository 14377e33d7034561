// `main!` takes handlers by name or by path, with a trailing comma.
mod orders {
    use kafka_handler::kafka_handler;

    #[kafka_handler(topics = ["orders"], group = "billing")]
    pub fn bill(_payload: &str) {}

    #[kafka_handler(topics = ["orders"], group = "warehouse", batch)]
    pub async fn pack(_batch: kafka_handler::Batch<'_, &str>) {}
}

use orders::bill;

kafka_handler::main!(bill, orders::pack,);
