//! Handlers cannot have a `where` clause.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle<'a>(_payload: &'a [u8])
where
    'a: 'a,
{
}

fn main() {}
