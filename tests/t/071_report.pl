# pgark report against a real PostgreSQL 15, `pgark receive` streaming into a local
# repository: verify leaves its record; a drill record planted with a timestamp older
# than drill_max_age makes report exit 3 naming the KPI; after a real drill that passes
# report exits 0 (text, --json, and --html, the page rendered by headless Chromium and
# its rendered text holding the KPI values); with the receiver stopped and a tight
# rpo_target, the RPO target is missed (exit 3); targets that are not durations or are
# zero are configuration errors (exit 2).
use strict;
use warnings;

use File::Path qw(make_path);
use JSON::PP;
use POSIX qw(strftime);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "track_commit_timestamp = on\nautovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my %cfg = (
	spool => "$tmp/spool",
	repos => [ [ local => $repo ] ],
	conninfo => 'host=' . $src->host . ' port=' . $src->port . ' dbname=postgres',
	create_slot => 1,
	partial => '1s');
my $config = write_config(receiver_config(%cfg), "$tmp/pgark.yaml");
my $sdir = "$tmp/spool/main";
make_path("$tmp/spool");
sub pgark { return run_pgark([ '--config', $config, @_ ]) }

sub report_json
{
	my (@args) = @_;
	my $r = pgark('report', '--json', @args);
	my $j = eval { decode_json($r->{stdout}) } // {};
	my $c = $j->{clusters}[0] // {};
	return ($r, $c, { map { ($_->{name} => $_) } @{ $c->{kpis} // [] } });
}

my $rx = receiver_start($config);
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'the receiver streams')
  or diag(receiver_log($rx));
sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g");
my $r = pgark('backup', '--no-progress');
is($r->{rc}, 0, 'backup') or diag($r->{stderr});
sql("INSERT INTO t VALUES (0, 'after')");
sql('SELECT pg_switch_wal()');
my $end = sql('SELECT pg_current_wal_lsn()');
ok(poll_until(sub { lsn_int(repo_status($sdir, 'local')->{shipped_lsn} // '0/0') >= lsn_int($end) }, 60),
	'the repository holds the WAL');
ok(-s "$sdir/rpo-history", 'the receiver keeps an RPO history in its spool');

# --- verify leaves a record ----------------------------------------------------------------

$r = pgark('verify');
is($r->{rc}, 0, 'verify: no problem') or diag($r->{stdout} . $r->{stderr});
my @vrec = glob("$repo/main/verifies/*.json");
is(scalar @vrec, 1, 'verify wrote its record');
my ($vname) = $vrec[0] =~ m{/([^/]+)\.json$};
my $v = eval { decode_json(repo_cat($repo, 'main', "verifies/$vname.json")->{stdout}) } // {};
is($v->{result}, 'passed', 'the record says it passed');
is($v->{problems}, 0, 'with no problem');

# --- the last drill that passed is older than drill_max_age ---------------------------------

my $old = time() - 8 * 86400;
my $oname = strftime('%Y%m%dT%H%M%SZ', gmtime($old)) . '-local';
repo_plant($repo, 'main', "drills/$oname.json", encode_json({
	format => 1, name => $oname, cluster => 'main', repository => 'local',
	time => strftime('%Y-%m-%d %H:%M:%S+00', gmtime($old)), result => 'passed', exit => 0,
	rto_ms => 4000, rpo_seconds => 0, target => { kind => 'latest' } }));
my ($rr, $c, $k) = report_json();
is($rr->{rc}, 3, 'the last drill that passed is 8 days old: report exits 3') or diag($rr->{stdout} . $rr->{stderr});
is($k->{drill_age}{met}, JSON::PP::false, 'the drill_age KPI is missed');
like($k->{drill_age}{display}, qr/^8d /, 'its value is 8 days');
is($k->{drill_age}{target_display}, '7d 0h', 'against drill_max_age (7d by default)');
ok($k->{verify_age}{met}, 'the verify KPI is met');
is($c->{verify}{count}, 1, 'the verify run is counted');
$r = pgark('report');
is($r->{rc}, 3, 'in words: exit 3 too');
like($r->{stdout}, qr/^  MISSED  age of the last drill that passed\s+8d \S+\s+target 7d 0h/m, 'naming the KPI missed');

# --- a drill that passes ----------------------------------------------------------------------

$r = pgark('drill', '--repo', 'local');
is($r->{rc}, 0, 'a drill to latest passes') or diag($r->{stdout} . $r->{stderr});
($rr, $c, $k) = report_json();
is($rr->{rc}, 0, 'report exits 0 after a good drill and verify') or diag($rr->{stdout} . $rr->{stderr});
ok($c->{ok}, 'every KPI met');
is($c->{drills}{count}, 2, 'both drills of the period are counted');
is($c->{drills}{passed}, 2, 'both passed');
ok($k->{rto_last}{met}, 'the RTO of the last drill is within rto_target');
cmp_ok($k->{rto_last}{value}, '>', 0, "it is measured ($k->{rto_last}{display})");
ok($k->{drill_age}{met} && $k->{drill_age}{value} < 600, 'the last drill that passed is minutes old');
ok($k->{rpo_now_local}{met}, "the local RPO now is within target ($k->{rpo_now_local}{display})");
ok($k->{rpo_worst_local}{met}, 'and its worst over the period');
cmp_ok($c->{rpo_history}{samples}, '>=', 1, 'from the receiver\'s history');
is($c->{backups}[0]{count}, 1, 'one backup');
like($c->{windows}[0]{to}, qr/^\d{4}-/, 'the restorable window ends at the last commit archived');
$r = pgark('report');
is($r->{rc}, 0, 'in words: exit 0');
like($r->{stdout}, qr/^cluster "main": every KPI met$/m, 'every KPI met');
like($r->{stdout}, qr/^  drills: 2 \(2 passed, 0 failed or could not run\); RTO p50 /m, 'with the drills and their RTO');

# --- the page, rendered --------------------------------------------------------------------------

my $page = "$tmp/report.html";
$r = pgark('report', '--html', $page);
is($r->{rc}, 0, 'report --html: exit 0') or diag($r->{stderr});
my $html = slurp_file($page);
unlike($html, qr/<(script|link|img)\b|\bsrc=|url\(/i, 'the page is self-contained (no script, no external asset)');
like($html, qr/<svg class="chart".*<(polyline|circle) class="local"/s, 'it has the RPO chart');
like($html, qr/<svg class="chart".*<rect class="met"/s, 'and the RTO chart');
my $chromium = (grep { -x $_ } qw(/usr/bin/chromium /usr/bin/chromium-browser))[0];
ok($chromium, 'Chromium is installed (make deps)') or BAIL_OUT('no chromium: run make deps as root');
my $profile = "$tmp/chromium";
my $dom = run_cmd([ $chromium, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
	"--user-data-dir=$profile", '--dump-dom', "file://$page" ], timeout => 120);
is($dom->{rc}, 0, 'headless Chromium renders it') or diag($dom->{stderr});
(my $text = $dom->{stdout}) =~ s/<[^>]*>/ /g;
$text =~ s/\s+/ /g;
like($text, qr/Cluster main: every KPI met/, 'the rendered page says every KPI met');
for my $name (qw(rto_last drill_age rpo_now_local rpo_worst_local verify_age))
{
	like($text, qr/\Q$k->{$name}{label}\E \S.*? \Q$k->{$name}{target_display}\E met/,
		"the rendered page has the KPI \"$k->{$name}{label}\" with its target, met");
}
like($text, qr/RTO of the last drill \Q$k->{rto_last}{display}\E 30m 0s met/, 'and the RTO of the last drill, as measured');

# --- the RPO target missed ----------------------------------------------------------------------

is(receiver_stop($rx)->{rc}, 0, 'the receiver stops');
my $tight = write_config(receiver_config(%cfg, extra => "    rpo_target: 1s\n"), "$tmp/pgark-tight.yaml");
my ($rc, $rpo);
ok(poll_until(sub {
	my $res = run_pgark([ '--config', $tight, 'report', '--json' ]);
	$rc = $res->{rc};
	($rpo) = grep { $_->{name} eq 'rpo_now_local' } @{ ((eval { decode_json($res->{stdout}) } // {})->{clusters} // [{}])->[0]{kpis} // [] };
	$rpo && JSON::PP::is_bool($rpo->{met}) && !$rpo->{met} }, 30),
	'with the receiver stopped and rpo_target 1s, the RPO now KPI is missed');
is($rc, 3, 'report exits 3');
like($rpo->{detail}, qr/the receiver is not running/, 'and says the receiver is not running');

# --- targets are checked ------------------------------------------------------------------------

my $bad = write_config(receiver_config(%cfg, extra => "    rto_target: 0s\n"), "$tmp/pgark-bad.yaml");
$r = run_pgark([ '--config', $bad, 'report' ]);
is($r->{rc}, 2, 'rto_target 0s: exit 2');
like($r->{stderr}, qr/\Q$bad\E:\d+:\d+: key "rto_target" in cluster "main" must be greater than zero/,
	'naming the file, the line and the key');

$src->stop;
done_testing();
