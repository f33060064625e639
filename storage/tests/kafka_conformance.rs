//! The log conformance suite on the Kafka backend, against a real Kafka-protocol broker
//! (tansu, started on loopback for this test; `.ci/run` installs it). Needs `--features kafka`.
#![cfg(feature = "kafka")]

use kinfold_storage::conformance;
use kinfold_storage::kafka::KafkaLog;
use kinfold_tests::Broker;
use std::sync::Arc;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_conformance_suite_passes_on_kafka() {
    let broker = Broker::start().expect("tansu starts");
    let log = Arc::new(KafkaLog::connect(&broker.bootstrap).expect("connects"));
    for (index, check) in conformance::CHECKS.iter().enumerate() {
        let started = Instant::now();
        conformance::run(check, log.clone(), &format!("kafka{index}")).await;
        eprintln!("{check}: ok in {:?}", started.elapsed());
    }
}
