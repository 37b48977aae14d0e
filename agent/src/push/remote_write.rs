//! Prometheus remote write 1.0: a `WriteRequest` protobuf, snappy-compressed (block format),
//! POSTed with the protocol's headers. The messages are the spec's (prompb/types.proto,
//! remote.proto), the fields nodetel sends and nothing else.
use prost::Message;

use super::series::Series;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` among them (the spec requires the order).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const VERSION: &str = "0.1.0";

/// One pass's series at `timestamp_ms`, with `external` labels added (an exposition label of
/// the same name wins, as Prometheus' external labels do), as one compressed request body.
pub fn encode(series: &[Series], external: &[(String, String)], timestamp_ms: i64) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|s| {
            let mut labels: Vec<Label> = s
                .labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect();
            for (name, value) in external {
                if !labels.iter().any(|l| &l.name == name) {
                    labels.push(Label {
                        name: name.clone(),
                        value: value.clone(),
                    });
                }
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: timestamp_ms,
                }],
            }
        })
        .collect();
    let body = WriteRequest { timeseries }.encode_to_vec();
    // Compressing into a Vec cannot fail but for an input over 2^32 - 1 bytes (snappy's
    // limit), which no exposition reaches; an empty body is then sent and refused, not a panic.
    snap::raw::Encoder::new()
        .compress_vec(&body)
        .unwrap_or_default()
}

/// The request a body carries (for tests and for reading a spooled batch back).
pub fn decode(body: &[u8]) -> Option<WriteRequest> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    WriteRequest::decode(raw.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_to_the_series_with_sorted_labels() {
        let (series, _) =
            super::super::series::parse("b{z=\"1\",a=\"2\"} 3.5\nc{job=\"mine\"} 1\n");
        let external = [
            ("job".to_string(), "nodetel".to_string()),
            ("instance".to_string(), "node-1".to_string()),
        ];
        let req = decode(&encode(&series, &external, 1_700_000_000_123)).expect("decode");
        assert_eq!(req.timeseries.len(), 2);
        let names = |t: &TimeSeries| {
            t.labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&req.timeseries[0]),
            ["__name__=b", "a=2", "instance=node-1", "job=nodetel", "z=1"]
        );
        // The exposition's own `job` wins over the external one.
        assert_eq!(
            names(&req.timeseries[1]),
            ["__name__=c", "instance=node-1", "job=mine"]
        );
        assert_eq!(
            req.timeseries[0].samples,
            [Sample {
                value: 3.5,
                timestamp: 1_700_000_000_123
            }]
        );
        assert!(decode(b"not snappy").is_none());
    }
}
