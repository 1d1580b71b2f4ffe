# The restorable window starts where PostgreSQL can stop: at the newest transaction that
# ends before the backup's stop point (the backup records it from the WAL it carries),
# not at the second after the backup's stop time. A writer commits a row every few
# milliseconds across a backup and the second after it (track_commit_timestamp on, so
# each row's commit time is known). `info` shows the window's start W; a restore to a
# time 1 ms before W is refused before anything is written, and restores to W + 1 ms
# and to two commit times within the first second after the backup ended each hold
# exactly the rows committed at or before the target. (Before: every target before the
# stop time's next whole second was refused.)
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use POSIX qw(floor strftime);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Time::Local;
use PgarkTest;

my $pgark = pgark_bin();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $src = PostgreSQL::Test::Cluster->new('src');
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
EOF

$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', <<"EOF");
track_commit_timestamp = on
archive_mode = on
archive_command = '"$pgark" --config "$config" wal-push "%p"'
EOF
$src->start;

sub sql { return $src->safe_psql('postgres', $_[0]) }

sql('CREATE TABLE t (id bigserial PRIMARY KEY, pad text)');
sql(<<'EOF');
CREATE PROCEDURE writer() LANGUAGE plpgsql AS $$
BEGIN
  WHILE NOT EXISTS (SELECT FROM pg_class WHERE relname = 'writer_stop') LOOP
    INSERT INTO t (pad) VALUES ('x');
    COMMIT;
    PERFORM pg_sleep(0.003);
  END LOOP;
END $$
EOF
sql('SELECT pg_switch_wal()');

# The writer runs until told to stop (a table appears), in a psql of its own.
my ($out, $err) = ('', '');
my $writer = IPC::Run::start(
	[ 'psql', '-X', '-d', $src->connstr('postgres'), '-c', 'CALL writer()' ],
	'>', \$out, '2>', \$err);
ok(poll_until(sub { sql('SELECT count(*) FROM t') >= 50 }), 'the writer commits');

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'a backup while the writer commits') or diag($r->{stderr});
my $summary = eval { decode_json($r->{stdout}) } // {};

# The writer goes on for the first second after the backup's end and a little more.
my $stop = $summary->{stop_time} // '';
my ($y, $mo, $d, $h, $mi, $s) = $stop =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/
  or BAIL_OUT("no stop_time in the backup's summary: $r->{stdout}");
my $next_second = timegm($s, $mi, $h, $d, $mo - 1, $y) + 1;
ok(poll_until(sub { Time::HiRes::time() >= $next_second + 0.5 }),
	'the clock passed the second after the stop time');
sql('CREATE TABLE writer_stop ()');
$writer->finish;
sql('SELECT pg_switch_wal()');
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn() - 1)');
ok($src->poll_query_until('postgres', "SELECT last_archived_wal >= '$seg' FROM pg_stat_archiver"),
	'the WAL after the backup is archived');

# Every row and its commit time in Unix microseconds.
my %us;
for my $line (split /\n/,
	sql("SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint FROM t"))
{
	my ($id, $t) = split /\|/, $line;
	$us{$id} = $t;
}

sub us_text
{
	my ($t) = @_;
	my $sec = floor($t / 1000000);
	return strftime('%Y-%m-%d %H:%M:%S', gmtime($sec)) . sprintf('.%06d+00', $t - $sec * 1000000);
}

sub text_us
{
	my ($text) = @_;
	my ($y, $mo, $d, $h, $mi, $s, $f) =
	  $text =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/
	  or return undef;
	return timegm($s, $mi, $h, $d, $mo - 1, $y) * 1000000 + $f;
}

# --- the window's start, from info --------------------------------------------------------

$r = run_pgark([ '--config', $config, 'info', '--json' ]);
is($r->{rc}, 0, 'info --json') or diag($r->{stderr});
my $from_text;
while ($r->{stdout} =~ /"from_time"\s*:\s*"([^"]+)"/g) { $from_text //= $1 }
my $w = text_us($from_text // '');
ok(defined $w, "info shows the window's start to the microsecond ($from_text)");
$w //= 0;
cmp_ok($w, '<', $next_second * 1000000, 'it is before the stop time\'s next second');
# W is the commit time of a transaction of the writer: the newest one before the stop point.
ok((grep { $_ == $w } values %us), 'it is the commit time of one of the rows');

# --- a target 1 ms before W is refused, nothing written -------------------------------

my $empty = "$tmp/refused";
mkdir $empty;
chmod 0700, $empty;
# (Given without a zone, which pgark says it takes as UTC before anything else.)
my $zoneless = us_text($w - 1000) =~ s/\+00$//r;
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $empty, '--target-time', $zoneless ]);
is($r->{rc}, 2, 'a target 1 ms before the window exits 2');
like($r->{stderr}, qr/--target-time has no time zone: taken as UTC, \Q$zoneless\E\+00/,
	'a time without a zone is said to be taken as UTC');
my $wtext = us_text($w);
like($r->{stderr}, qr/is outside the restorable window \Q$wtext\E \.\. .*before the oldest backup is consistent/,
	'the message names the window\'s exact start and why');
opendir(my $dh, $empty) or die;
is(scalar(grep { !/^\.\.?$/ } readdir $dh), 0, 'and writes nothing');
closedir $dh;

# --- three targets in the first second after the backup ----------------------------------

my @after = sort { $us{$a} <=> $us{$b} } grep { $us{$_} > $w + 1000 && $us{$_} < $next_second * 1000000 } keys %us;
cmp_ok(scalar(@after), '>=', 4, 'the writer committed in the first second after the backup');
my @targets = ($w + 1000, $us{ $after[ int(@after / 2) ] }, $us{ $after[-1] });

my $i = 0;
for my $target (@targets)
{
	$i++;
	my $node = PostgreSQL::Test::Cluster->new("r$i");
	my $text = us_text($target);
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--target-time', $text, '--target-action', 'promote' ]);
	is($res->{rc}, 0, "restore to $text") or diag($res->{stderr});
	like($res->{stdout},
		qr/^next: start the server \(pg_ctl -D "\Q@{[$node->data_dir]}\E" start, or pgark restore \.\.\. --start --wait\): it replays the archived WAL to the target, then promotes/m,
		'restore says what comes next') if $i == 1;
	$node->append_conf('postgresql.conf', "port = " . $node->port . "\narchive_mode = off\n");
	$node->start;
	ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		"recovery to $text finished");
	my $want = join(',', sort { $a <=> $b } grep { $us{$_} <= $target } keys %us);
	is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
		$want, "the rows committed at or before $text, exactly");
	$node->stop;
}

done_testing();
