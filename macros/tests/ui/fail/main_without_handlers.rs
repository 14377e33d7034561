// `main!` needs at least one handler.
kafka_handler::main!();
