# check's RPO when the receiver runs but has never streamed a byte (here its slot is
# held by another client, so every START_REPLICATION is refused and retried): its
# status.json says lag 0, which is no RPO at all. The rpo check must judge by what the
# repository holds — nothing — and fail, saying the receiver has streamed nothing yet.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->start;
$node->safe_psql('postgres', "SELECT pg_create_physical_replication_slot('held', true)");

# Another client holds the slot.
my $tmp = PostgreSQL::Test::Utils::tempdir();
mkdir("$tmp/other");
my $holder = IPC::Run::start(
	[ 'pg_receivewal', '-h', $node->host, '-p', $node->port, '-S', 'held', '-D', "$tmp/other", '-n' ],
	'<', \undef, '>', \my $hout, '2>', \my $herr);
ok($node->poll_query_until('postgres', "SELECT active FROM pg_replication_slots WHERE slot_name = 'held'"),
	'another client holds the slot');

my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ one => "$tmp/repo" ] ],
		conninfo => 'host=' . $node->host . ' port=' . $node->port,
		slot => 'held',
		extra => "    rpo_target: 1h\n"),
	"$tmp/pgark.yaml");
my $rx = receiver_start($config);
ok(poll_until(sub { receiver_log($rx) =~ /reconnecting in/ }, 60), 'the receiver is refused and retries')
  or diag(receiver_log($rx));
ok(poll_until(sub { my $st = read_status("$tmp/spool/main"); $st && !$st->{connected} }, 30),
	'its status.json says it is not connected');
is(read_status("$tmp/spool/main")->{flushed_lsn}, '0/0', 'and that it flushed nothing');

my $r = run_pgark([ '--config', $config, 'check', '--json' ]);
is($r->{rc}, 3, 'check: exit 3');
my %by = map { $_->{name} => $_ } @{ (eval { decode_json($r->{stdout}) } // {})->{checks} // [] };
ok(!$by{'rpo:one'}{ok}, 'rpo:one fails');
is($by{'rpo:one'}{detail},
	'repository "one" holds no complete WAL segment (rpo_target 1h; the receiver has streamed nothing yet)',
	'saying the repository holds nothing and why');

is(receiver_stop($rx)->{rc}, 0, 'the receiver stops cleanly');
$holder->signal('TERM');
$holder->finish;
$node->stop;
done_testing();
