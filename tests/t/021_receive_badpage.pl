# The receiver facing a bad WAL page from the server.
#
# A real server never sends one, so the receiver streams through tests/tools/pgfault,
# a loopback proxy that corrupts the header of a chosen page inside the XLogData
# messages. For each kind of damage (xlp_magic, xlp_pageaddr, xlp_tli, and the magic
# again with the header cut across two messages) the receiver must stop the stream
# with an error naming the page and the field, log it at error level and reconnect
# with backoff (to meet the same bad page again: the same error); the flush it
# reports to the server (pg_stat_replication while connected, the slot afterwards)
# never reaches the bad page; the spool never holds a byte of it (its partial segment
# is pg_wal's bytes, then zeros). Once the proxy relays faithfully again the stream
# resumes with no gap and the segment in the repository is pg_wal's, byte for byte.
# The first bad page sends one wal.damaged event to the webhook, however many attempts
# meet it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use PgarkTest;
use PgarkWebhook;

my $SEG = 16 * 1024 * 1024;
my $BLCKSZ = 8192;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $repo = "$tmp/repo";

# --- the proxy ----------------------------------------------------------------------

my $control = "$tmp/fault";

# What the proxy does to the stream from now on ("pass", or "KIND LSN [split]").
sub set_fault
{
	write_file("$control.tmp", "$_[0]\n");
	rename("$control.tmp", $control) or die "rename: $!";
	return;
}

set_fault('pass');
my $pport = free_tcp_port();
my $plog = "$PostgreSQL::Test::Utils::log_path/021_pgfault.log";
my $ppid = fork() // die "fork: $!";
if ($ppid == 0)
{
	open(STDIN, '<', '/dev/null');
	open(STDOUT, '>>', $plog);
	open(STDERR, '>&', \*STDOUT);
	exec(tool_bin('pgfault'), $pport, $node->host . '/.s.PGSQL.' . $node->port, $control)
	  or POSIX::_exit(127);
}
END
{
	if ($ppid)
	{
		kill('TERM', $ppid);
		waitpid($ppid, 0);
	}
}
ok( poll_until(
		sub {
			my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $pport);
			close($c) if $c;
			return $c;
		}),
	"pgfault listens on 127.0.0.1:$pport");

my $wh = webhook_start();
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ one => $repo ] ],
		conninfo => "host=127.0.0.1 port=$pport sslmode=disable gssencmode=disable",
		create_slot => 1,
		extra => "notify:\n  - { url: \"$wh->{base}/hook\", events: [wal.damaged] }\n"),
	"$tmp/pgark.yaml");

# --- what the server sees -------------------------------------------------------------

sub flush_reported
{
	my $v = sql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgark_main'");
	return $v eq '' ? undef : lsn_int($v);
}

sub slot_restart
{
	return lsn_int(sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'"));
}

# Wait until the receiver has reported everything the server has flushed.
sub caught_up
{
	my $target = lsn_int(sql('SELECT pg_current_wal_flush_lsn()'));
	return poll_until(sub { (flush_reported() // 0) >= $target }, 60);
}

sub seg_of_lsn { return seg_name(1, int($_[0] / $SEG)) }

sql('CREATE TABLE t (id int, pad text)');
# The sanitizer build, when there is one: the held header bytes are copied around.
my $asan = pgark_asan_bin();
note($asan ? "running the sanitizer build $asan" : 'no sanitizer build: running the plain one');
my $rx = receiver_start($config, $asan ? (bin => $asan) : ());
ok(caught_up(), 'the receiver streams through the proxy');
my $first = seg_of_lsn(lsn_int(sql('SELECT pg_current_wal_lsn()')));

my @cases = (
	[ magic => '', sub { 'magic 0xD1EF, expected 0xD110' } ],
	[ pageaddr => '', sub { 'page address ' . lsn_text($_[0] ^ 0x2000) . ' does not match its position' } ],
	[ tli => '', sub { 'timeline 2 is above the streamed timeline 1' } ],
	[ magic => 'split', sub { 'magic 0xD1EF, expected 0xD110' } ]);
my $last;

for my $case (@cases)
{
	my ($kind, $split, $what) = @$case;
	my $label = $kind . ($split ? ' (header across two messages)' : '');

	# A fresh segment, so the bad page lies in the spool's partial segment.
	sql('SELECT pg_switch_wal()');
	sql("INSERT INTO t VALUES (0, 'x')");
	ok(caught_up(), "$label: streaming before the fault");
	my $insert = lsn_int(sql('SELECT pg_current_wal_insert_lsn()'));
	my $page = (int($insert / $BLCKSZ) + 3) * $BLCKSZ;
	my $seg = seg_of_lsn($page);
	my $page_off = $page % $SEG;
	my $expect = 'invalid WAL page header at ' . lsn_text($page) . ': ' . $what->($page);
	set_fault("$kind " . lsn_text($page) . ($split ? ' split' : ''));
	sql("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g");
	my $past = lsn_int(sql('SELECT pg_current_wal_flush_lsn()'));
	cmp_ok($past, '>', $page + 4 * $BLCKSZ, "$label: the server's WAL goes past the bad page " . lsn_text($page));

	# Watch what the receiver reports while it meets the bad page, twice.
	my $max_flush = 0;
	my $count = sub { scalar(() = receiver_log($rx) =~ /error\s+\Q$expect\E/g) };
	my $twice = poll_until(
		sub {
			my $f = flush_reported();
			$max_flush = $f if defined $f && $f > $max_flush;
			return $count->() >= 2;
		},
		60);
	ok($twice, "$label: the stream stops with \"$expect\", logged as an error, at each attempt");
	like(receiver_log($rx), qr/error\s+\Q$expect\E\n(?:.*\n)*?.*reconnecting in [\d.]+ s/,
		"$label: the receiver reconnects with backoff");
	ok(receiver_alive($rx), "$label: and keeps running");
	if ($case == $cases[0])
	{
		# Meeting the same bad page again is no progress: the waits grow.
		ok(poll_until(sub { $count->() >= 3 }, 60), "$label: a third attempt");
		my ($after) = receiver_log($rx) =~ /(error\s+\Q$expect\E.*)\z/s;
		my @waits = ($after // '') =~ /reconnecting in ([\d.]+) s/g;
		ok(@waits >= 2 && $waits[1] >= 1.0,
			"$label: the second wait after the bad page is backed off to 1..2 s (@waits)");
		my $damaged = sub {
			[ grep { ($_->{json}{event} // '') eq 'wal.damaged' } @{ webhook_requests($wh) } ]
		};
		ok(poll_until(sub { @{ $damaged->() } }, 30), "$label: wal.damaged sent");
		my @sent = @{ $damaged->() };
		is(scalar(@sent), 1, "$label: once, for three attempts");
		like($sent[0]{json}{summary}, qr/^a WAL page from the server is damaged: .*\Q$expect\E/,
			"$label: naming the page and the field");
	}
	like((read_status($sdir) // {})->{last_error} // '', qr/\Q$expect\E/,
		"$label: status.json says why");
	like(slurp_file($plog), qr/corrupted \Q$kind\E at \Q${\lsn_text($page)}\E/,
		"$label: the proxy did corrupt that page");
	like(slurp_file($plog), qr/split the header at \Q${\lsn_text($page)}\E/,
		"$label: across two messages") if $split;
	cmp_ok($max_flush, '<=', $page,
		"$label: the flush reported while connected (" . lsn_text($max_flush) . ') never reaches the bad page');
	my $restart = slot_restart();
	cmp_ok($restart, '<=', $page,
		"$label: nor does the slot's restart_lsn (" . lsn_text($restart) . ')');
	cmp_ok($restart, '>=', $page - $page_off, "$label: which did move up to the segment");

	# The spool's partial segment: pg_wal's bytes, then zeros, never the bad header.
	my $spooled = slurp_bytes("$sdir/$seg.partial");
	my $server = slurp_bytes("$pgwal/$seg");
	my ($same) = ($spooled ^ $server) =~ /^(\0*)/;
	my $common = length($same);
	ok(substr($spooled, $common) =~ /^\0*\z/,
		"$label: the spool holds pg_wal's bytes up to " . lsn_text($page - $page_off + $common) . ', then zeros');
	cmp_ok($common, '>=', $restart - ($page - $page_off), "$label: at least up to what was acknowledged");
	is(unpack('H*', substr($spooled, $page_off, 24)), '00' x 24,
		"$label: no byte of the bad page header is in the spool");

	# The proxy relays faithfully again: no gap, the segment is pg_wal's.
	set_fault('pass');
	ok(caught_up(), "$label: relayed faithfully again, the receiver catches up");
	my $done = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	is($done, $seg, "$label: still in segment $seg");
	sql('SELECT pg_switch_wal()');
	ok(poll_until(sub { -f "$repo/main/wal/00000001/$seg" }, 60), "$label: $seg reaches the repository");
	my $got = repo_cat($repo, 'main', "wal/00000001/$seg");
	ok($got->{rc} == 0 && $got->{stdout} eq slurp_bytes("$pgwal/$seg"),
		"$label: byte for byte pg_wal's");
	$last = $seg;
}

my @bad;
my (undef, $a) = seg_of_name($first);
my (undef, $b) = seg_of_name($last);
for my $segno ($a .. $b)
{
	my $name = seg_name(1, $segno);
	my $got = repo_cat($repo, 'main', "wal/00000001/$name");
	push @bad, $name unless $got->{rc} == 0 && $got->{stdout} eq slurp_bytes("$pgwal/$name");
}
is_deeply(\@bad, [], "no gap: every segment $first..$last in the repository equals pg_wal");

is(receiver_stop($rx)->{rc}, 0, 'SIGTERM: exit 0');
$node->stop;
done_testing();
