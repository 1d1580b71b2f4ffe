# An S3 repository that cannot work: wrong credentials (s3rver refuses an unknown
# access key id), a bucket that does not exist, an endpoint nobody listens on.
#
# Each time the receiver says so, naming the repository, in the log and in
# status.json's last_error; the posix repository beside it keeps receiving; the
# spool keeps every segment the S3 repository lacks; check names the missing bucket as
# the receiver does. Fixing the problem (creating the bucket) lets it catch up without a
# restart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $s3 = s3rver_start();
s3_create_bucket($s3, 'good');
my $dead_port = free_tcp_port();
my $tmp = PostgreSQL::Test::Utils::tempdir();

# name => [ s3 overrides, what the error must say ]
my %case = (
	key => [ { access_key_id => 'NOSUCHKEY' },
		qr/s3 GET of object "main\/repo\.json" in repository "offsite" refused: InvalidAccessKeyId: /
	],
	bucket => [ { bucket => 'nosuchbucket' },
		qr/bucket "nosuchbucket" of repository "offsite" does not exist \(NoSuchBucket: /
	],
	endpoint => [ { endpoint => "http://127.0.0.1:$dead_port" },
		qr/GET "http:\/\/127\.0\.0\.1:$dead_port\/good\/main\/repo\.json" failed: .*Couldn't connect to server/
	],
);
my %rx;
for my $name (sort keys %case)
{
	my $config = write_config(
		receiver_config(
			spool => "$tmp/spool_$name",
			repos => [ [ local => "$tmp/repo_$name" ] ],
			s3 => [ [ offsite => $s3, 'good', $case{$name}[0] ] ],
			conninfo => 'host=' . $node->host . ' port=' . $node->port,
			slot => "slot_$name",
			create_slot => 1,
			partial => '1s'),
		"$tmp/$name.yaml");
	$rx{$name} = receiver_start($config, name => $name);
}

sub offsite_state
{
	my ($name) = @_;
	my $st = read_status("$tmp/spool_$name/main") or return {};
	my ($r) = grep { $_->{name} eq 'offsite' } @{ $st->{repos} };
	return $r // {};
}

ok(poll_until(sub { !grep { !offsite_state($_)->{last_error} } keys %case }, 30),
	'every receiver reports an error for "offsite"');

sql('CREATE TABLE t (id int)');
my @segs;
for (1 .. 2)
{
	sql('INSERT INTO t SELECT g FROM generate_series(1, 1000) g');
	push @segs, seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG));
	sql('SELECT pg_switch_wal()');
}

for my $name (sort keys %case)
{
	my $local = "$tmp/repo_$name";
	my $spool = "$tmp/spool_$name/main";
	ok(poll_until(sub { !grep { !-f "$local/main/wal/00000001/$_" } @segs }, 30),
		"$name: \"local\" keeps receiving (@segs)");
	my @same = grep {
		my $g = repo_cat($local, 'main', "wal/00000001/$_");
		$g->{rc} == 0 && $g->{stdout} eq slurp_bytes("$pgwal/$_")
	} @segs;
	is(scalar(@same), scalar(@segs), "$name: equal to pg_wal");
	ok(!grep({ !-f "$spool/$_" } @segs), "$name: the spool keeps both segments for \"offsite\"");
	my $err = offsite_state($name)->{last_error} // '';
	like($err, $case{$name}[1], "$name: status.json last_error says why");
	like($err, qr/repository "offsite"/, "$name: and names the repository");
	my $log = receiver_log($rx{$name});
	like($log, qr/warn\s+repository "offsite": .*$case{$name}[1]/, "$name: the log says the same");
	like($log, qr/info\s+WAL for repository "offsite" stays in the spool until it can be opened/,
		"$name: and that its WAL waits in the spool");
	unlike($log, qr/repository "offsite": (repository "offsite"|$)/m,
		"$name: each warning names the repository once, and says something");
	ok(receiver_alive($rx{$name}), "$name: the receiver runs on");
	note("$name: $err");
}

# check says what the receiver says: the bucket is missing, not the cluster in it.
my $c = run_pgark([ '--config', "$tmp/bucket.yaml", 'check' ]);
isnt($c->{rc}, 0, 'check fails while the bucket is missing');
like($c->{stdout} . $c->{stderr}, qr/bucket "nosuchbucket" of repository "offsite" does not exist/,
	'check names the missing bucket');
unlike($c->{stdout} . $c->{stderr}, qr/holds no cluster/, 'and does not call it a missing cluster');

# The missing bucket appears: "offsite" catches up and the spool drains.
s3_create_bucket($s3, 'nosuchbucket');
my $spool = "$tmp/spool_bucket/main";
ok( poll_until(
		sub {
			my $o = offsite_state('bucket');
			!$o->{last_error} && ($o->{last_segment} // '') ge $segs[-1];
		},
		60),
	'bucket created: "offsite" catches up without a restart');
ok(poll_until(sub { !grep { -f "$spool/$_" } @segs }), 'and the spool drains');
my $cfg = "$tmp/bucket.yaml";
my @same = grep {
	my $g = repo_cat("config:$cfg:offsite", 'main', "wal/00000001/$_");
	$g->{rc} == 0 && $g->{stdout} eq slurp_bytes("$pgwal/$_")
} @segs;
is(scalar(@same), scalar(@segs), 'the segments in the bucket equal pg_wal');

is(receiver_stop($rx{$_})->{rc}, 0, "$_: stopped") for sort keys %case;
$node->stop;
done_testing();
