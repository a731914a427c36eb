import Testing

/// The integration suites run one after another: the simulation saturates the disk with fsyncs,
/// and the process and loopback tests beside it would see their deadlines pass while waiting for
/// their own commits.
@Suite(.serialized) enum Integration {}
