//! Ordering: partition and key lanes.

use super::*;

/// Partition order, four partitions of 16 records, handlers that take a
/// few milliseconds: in each partition, calls start in offset order, each
/// after its predecessor ended; and partitions ran side by side (the first
/// record of each waits until the first of every partition started, and
/// records of one started while another's ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_order_keeps_each_partition_in_offset_order_and_runs_partitions_side_by_side() {
    telemetry(Mode::OtelOnly);
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: i64 = 16;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "by-partition", PARTITIONS).await;
    for partition in 0..PARTITIONS {
        send_to(&broker, &topic, partition, PER_PARTITION as usize).await;
    }

    let log: Log = Timeline::new();
    // The first record of each partition waits until the first of every
    // partition started: only partitions running side by side get past it
    // without its deadline.
    let gate = Gate::new(PARTITIONS as usize, GATE);
    let stuck = Arc::new(AtomicBool::new(false));
    let handler = logged("by_partition", &topic, &group, &log, {
        let stuck = stuck.clone();
        move |at| {
            let (gate, stuck) = (gate.clone(), stuck.clone());
            async move {
                if at.offset == 0 && !gate.arrive().await {
                    stuck.store(true, Ordering::SeqCst);
                }
                work_a_little(&at).await;
                Ok(())
            }
            .boxed()
        }
    });
    assert_eq!(handler.options().ordering, ProcessingOrder::Partition);
    let total = (PARTITIONS as i64 * PER_PARTITION) as usize;
    let all_handled = wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= total
    });
    run_until(&broker, vec![handler], all_handled).await;

    assert!(
        !stuck.load(Ordering::SeqCst),
        "the first records of the {PARTITIONS} partitions did not all start side by side"
    );
    let runs = runs(&log);
    assert_eq!(runs.len(), total, "each record called once");
    let offsets: Vec<i64> = (0..PER_PARTITION).collect();
    for partition in 0..PARTITIONS {
        let lane: Vec<&Run> = runs
            .iter()
            .filter(|run| run.at.partition == partition)
            .collect();
        assert_lane(&format!("partition {partition}"), &lane, &offsets);
    }
    let overlapped = overlaps(&runs, |run| run.at.partition.to_string());
    assert!(
        overlapped > 0,
        "no record started while a record of another partition ran: partitions did not run \
         side by side"
    );
    eprintln!("{overlapped} starts beside a record of another partition");
}

/// Key order on one partition, four keys and keyless records interleaved:
/// per key, and among the keyless, calls start in offset order, each after
/// its predecessor ended; records of different keys ran side by side, and
/// keyless records beside keyed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_order_keeps_each_key_and_the_keyless_in_offset_order_and_runs_keys_side_by_side() {
    telemetry(Mode::OtelOnly);
    const RECORDS: i64 = 60;
    /// Lanes: four keys, and the keyless records.
    const LANES: i64 = 5;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "by-key", 1).await;
    // Interleaved: k0 k1 k2 k3 (none) k0 k1 ...
    let lane_of = |offset: i64| match offset % LANES {
        4 => None,
        key => Some(format!("k{key}")),
    };
    for offset in 0..RECORDS {
        let key = lane_of(offset);
        let mut record = TestRecord::new(&topic, b"x").partition(0);
        if let Some(key) = &key {
            record = record.key(key.as_bytes());
        }
        assert_eq!(send(&broker, record).await, (0, offset));
    }

    let log: Log = Timeline::new();
    // The first record of each lane waits until the first of every lane
    // started.
    let gate = Gate::new(LANES as usize, GATE);
    let stuck = Arc::new(AtomicBool::new(false));
    let handler = logged("by_key", &topic, &group, &log, {
        let stuck = stuck.clone();
        move |at| {
            let (gate, stuck) = (gate.clone(), stuck.clone());
            async move {
                if at.offset < LANES && !gate.arrive().await {
                    stuck.store(true, Ordering::SeqCst);
                }
                work_a_little(&at).await;
                Ok(())
            }
            .boxed()
        }
    })
    .with_ordering(ProcessingOrder::Key);
    let all_handled = wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= RECORDS as usize
    });
    run_until(&broker, vec![handler], all_handled).await;

    assert!(
        !stuck.load(Ordering::SeqCst),
        "the first records of the {LANES} lanes did not all start side by side"
    );
    let runs = runs(&log);
    assert_eq!(runs.len(), RECORDS as usize, "each record called once");
    for lane in 0..LANES {
        let key = lane_of(lane);
        let calls: Vec<&Run> = runs.iter().filter(|run| run.at.key == key).collect();
        let offsets: Vec<i64> = (0..RECORDS).filter(|o| o % LANES == lane).collect();
        assert_lane(&format!("key {key:?}"), &calls, &offsets);
    }
    let keyed: Vec<Run> = runs
        .iter()
        .filter(|r| r.at.key.is_some())
        .cloned()
        .collect();
    let overlapped = overlaps(&keyed, |run| format!("{:?}", run.at.key));
    assert!(
        overlapped > 0,
        "no record started while a record of another key ran: keys of one partition did not \
         run side by side"
    );
    let keyless: Vec<Run> = runs
        .iter()
        .filter(|r| r.at.key.is_none())
        .cloned()
        .collect();
    let keyless_beside_keyed = runs
        .iter()
        .filter(|a| a.at.key.is_some())
        .filter(|a| {
            keyless
                .iter()
                .any(|b| a.overlaps_start_of(b) || b.overlaps_start_of(a))
        })
        .count();
    assert!(
        keyless_beside_keyed > 0,
        "keyless records never ran beside records with a key"
    );
    eprintln!(
        "{overlapped} starts beside another key; {keyless_beside_keyed} keyed beside keyless"
    );
}
