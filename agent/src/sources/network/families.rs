//! The `network` kind's families: one `interface`-labelled counter per figure, as cAdvisor's;
//! an interface without a figure (nodetel does not have it) has no series.
use crate::{metrics::families::ContainerFamily, per_row};

pub static FAMILIES: &[ContainerFamily] = &[
    per_row!(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        Counter,
        network,
        "interface",
        name,
        rx_bytes
    ),
    per_row!(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        Counter,
        network,
        "interface",
        name,
        rx_packets
    ),
    per_row!(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        Counter,
        network,
        "interface",
        name,
        rx_dropped
    ),
    per_row!(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        Counter,
        network,
        "interface",
        name,
        rx_errors
    ),
    per_row!(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        Counter,
        network,
        "interface",
        name,
        tx_bytes
    ),
    per_row!(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        Counter,
        network,
        "interface",
        name,
        tx_packets
    ),
    per_row!(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        Counter,
        network,
        "interface",
        name,
        tx_dropped
    ),
    per_row!(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        Counter,
        network,
        "interface",
        name,
        tx_errors
    ),
];
