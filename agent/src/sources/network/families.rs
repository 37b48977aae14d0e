//! The `network` kind's families: one `interface`-labelled counter per figure, as cAdvisor's.
use crate::metrics::families::{ContainerFamily, Kind, Value};

/// A counter of one [`crate::snapshot::InterfaceStats`] figure per interface; an interface
/// without that figure (nodetel does not have it) has no series.
macro_rules! per_interface {
    ($name:literal, $help:literal, $field:ident) => {
        ContainerFamily {
            name: $name,
            help: $help,
            kind: Kind::Counter,
            extra: &[],
            value: Value::Many(|c, emit| {
                for i in c.network.iter().flatten() {
                    if let Some(v) = i.$field {
                        emit(&[("interface", &i.name)], v as f64);
                    }
                }
            }),
        }
    };
}

pub static FAMILIES: &[ContainerFamily] = &[
    per_interface!(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        rx_bytes
    ),
    per_interface!(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        rx_packets
    ),
    per_interface!(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        rx_dropped
    ),
    per_interface!(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        rx_errors
    ),
    per_interface!(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        tx_bytes
    ),
    per_interface!(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        tx_packets
    ),
    per_interface!(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        tx_dropped
    ),
    per_interface!(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        tx_errors
    ),
];
