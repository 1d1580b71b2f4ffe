# Prometheus metrics (issue 21 item 4): the receiver's endpoint on metrics_listen and the
# one-shot commands' textfiles in metrics_textfile, both accepted by `promtool check
# metrics`, with the figures status.json has; the sample alerting rules pass `promtool
# check rules`. A client that connects and says nothing holds up neither the stream nor
# the next scrape for long; what is not GET /metrics gets an HTTP error, and a request
# too large is refused.
use strict;
use warnings;

use File::Basename qw(dirname);
use HTTP::Tiny;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;

my $root = dirname(__FILE__) . '/../..';
my $promtool = '/usr/bin/promtool';
plan skip_all => 'promtool is not installed (make deps installs Debian\'s prometheus)'
  unless -x $promtool;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\ntrack_commit_timestamp = on\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql('CREATE TABLE t (id serial PRIMARY KEY, pad text)');

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $port = free_tcp_port();
my $textdir = "$tmp/textfile";
mkdir $textdir or die "mkdir $textdir: $!";
my $base = receiver_config(
	spool => "$tmp/spool",
	repos => [ [ local => "$tmp/repo_local" ] ],
	conninfo => 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres',
	create_slot => 1);
my $config = write_config(
	$base . "metrics_listen: 127.0.0.1:$port\nmetrics_textfile: $textdir\n", "$tmp/pgark.yaml");

# A bad address is a configuration error before anything runs.
my $bad = write_config($base . "metrics_listen: 127.0.0.1\n", "$tmp/bad.yaml");
my $r = run_pgark([ '--config', $bad, 'receive' ]);
is($r->{rc}, 2, 'metrics_listen without a port: exit 2');
like($r->{stderr}, qr/bad\.yaml:\d+:\d+: key "metrics_listen": "127\.0\.0\.1" is not HOST:PORT/,
	'... saying where and what is wrong');

# An address another process holds: receive says so and exits.
{
	my $holder = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1,
		Proto => 'tcp') or die "listen: $!";
	my $held = $holder->sockport;
	my $cfg = write_config($base . "metrics_listen: 127.0.0.1:$held\n", "$tmp/held.yaml");
	my $rx = receiver_start($cfg, name => 'held');
	my $rc = receiver_wait_exit($rx, 30);
	ok(defined $rc && $rc != 0, 'a metrics address in use: receive exits with an error');
	like(receiver_log($rx), qr/could not listen on 127\.0\.0\.1:$held for metrics: Address already in use/,
		'... naming the address');
}

my $rx = receiver_start($config, name => 'metrics');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"), 'the receiver streams');

my $http = HTTP::Tiny->new(timeout => 30);
my $url = "http://127.0.0.1:$port/metrics";

# The metrics as { "name{labels}" => value }, and the body; undef while unreachable.
sub scrape
{
	my $res = $http->get($url);
	return undef unless $res->{success};
	my %m;
	for my $line (split /\n/, $res->{content})
	{
		next if $line =~ /^#/;
		my ($k, $v) = $line =~ /^(\S+) (\S+)$/ or next;
		$m{$k} = $v;
	}
	return { m => \%m, body => $res->{content}, type => $res->{headers}{'content-type'} };
}

sub promtool_ok
{
	my ($text, $what) = @_;
	my $r = run_cmd([ $promtool, 'check', 'metrics' ], stdin => $text);
	is($r->{rc}, 0, "promtool check metrics accepts $what") or diag($r->{stdout} . $r->{stderr});
	is($r->{stdout} . $r->{stderr}, '', '... with no lint remark');
	return;
}

my $L = 'cluster="main"';
my $RL = 'cluster="main",repo="local",tier="local"';
my $s = poll_until(sub { my $x = scrape(); $x && exists $x->{m}{"pgark_spool_bytes{$L}"} ? $x : undef });
ok($s, 'GET /metrics answers, with the spool once the stream started');
like($s->{type}, qr{^text/plain; version=0\.0\.4}, '... in the text exposition format');
promtool_ok($s->{body}, 'the live endpoint');
is($s->{m}{"pgark_receiver_connected{$L}"}, 1, 'connected is 1');
is($s->{m}{"pgark_receiver_timeline{$L}"}, 1, 'timeline 1');
ok(exists $s->{m}{"pgark_rpo_seconds{cluster=\"main\",tier=\"local\"}"}, 'the RPO of the local tier');
ok(!exists $s->{m}{"pgark_rpo_seconds{cluster=\"main\",tier=\"offsite\"}"},
	'... and none for a tier without a repository');

# The figures are status.json's: once the stream is idle and everything shipped, the
# flushed and shipped positions and the tier's RPO agree exactly.
sql("INSERT INTO t (pad) SELECT repeat('x', 100) FROM generate_series(1, 1000)");
my $agree = poll_until(
	sub {
		my $st = read_status($sdir) or return 0;
		my $x = scrape() or return 0;
		my ($repo) = grep { $_->{name} eq 'local' } @{ $st->{repos} };
		return 0 unless $repo && $st->{flushed_lsn} eq $repo->{shipped_lsn};
		return 0 unless lsn_int($st->{flushed_lsn}) == lsn_int($node->lsn('write'));
		return 0 unless $x->{m}{"pgark_receiver_flushed_lsn_bytes{$L}"} == lsn_int($st->{flushed_lsn});
		return 0 unless $x->{m}{"pgark_repo_shipped_lsn_bytes{$RL}"} == lsn_int($repo->{shipped_lsn});
		return 0 unless $x->{m}{"pgark_rpo_seconds{cluster=\"main\",tier=\"local\"}"} ==
		  $st->{rpo}{local}{seconds};
		return 0 unless $x->{m}{"pgark_repo_segments_shipped_total{$RL}"} == $repo->{segments_shipped};
		return 1;
	});
ok($agree, 'flushed LSN, shipped LSN, tier RPO and segments shipped equal status.json\'s');

# Segments shipped grow after a switch, and so do the bytes.
$s = scrape();
my $segs = $s->{m}{"pgark_repo_segments_shipped_total{$RL}"};
my $bytes = $s->{m}{"pgark_repo_shipped_bytes_total{$RL}"};
sql('SELECT pg_switch_wal()');
sql('INSERT INTO t (pad) VALUES (\'after\')');
ok(poll_until(sub { my $x = scrape(); $x && $x->{m}{"pgark_repo_segments_shipped_total{$RL}"} > $segs }),
	'pgark_repo_segments_shipped_total grows after pg_switch_wal');
ok(scrape()->{m}{"pgark_repo_shipped_bytes_total{$RL}"} > $bytes, '... and so do the bytes shipped');
is(scrape()->{m}{"pgark_repo_upload_errors_total{$RL}"}, 0, 'no upload error');
ok(scrape()->{m}{"pgark_receiver_last_status_timestamp_seconds{$L}"} > time() - 60,
	'the last status time is recent');

# A client that connects and sends nothing: the stream goes on meanwhile.
{
	my $idle = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
	  or die "connect: $!";
	my $want = lsn_int($node->lsn('write'));
	sql("INSERT INTO t (pad) SELECT 'y' FROM generate_series(1, 1000)");
	$want = lsn_int($node->lsn('write'));
	ok(poll_until(sub { my $st = read_status($sdir); $st && lsn_int($st->{flushed_lsn}) >= $want }, 30),
		'a client that says nothing holds up no WAL');
	my $t0 = time();
	ok(scrape(), 'the next scrape is served once that client is dropped');
	cmp_ok(time() - $t0, '<', 15, '... within the I/O timeout');
	close($idle);
}

# What is not GET /metrics.
my $res = $http->get("http://127.0.0.1:$port/");
is($res->{status}, 404, 'another path: 404');
$res = $http->post_form($url, { a => 1 });
is($res->{status}, 405, 'POST: 405');
is($res->{headers}{allow}, 'GET, HEAD', '... with Allow');
$res = $http->get($url, { headers => { 'X-Pad' => 'z' x 9000 } });
is($res->{status}, 431, 'a request too large: 431');
ok(receiver_alive($rx), 'the receiver runs on');

# One-shot commands: a textfile each, with the last success carried over a failure.
$r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'a backup') or diag($r->{stderr});
my $bfile = "$textdir/pgark_main_backup.prom";
ok(-f $bfile, 'backup wrote pgark_main_backup.prom');
promtool_ok(slurp_file($bfile), 'the backup textfile');
my $btext = slurp_file($bfile);
like($btext, qr/^pgark_backup_last_success\{$L\} 1$/m, 'backup: last_success 1');
like($btext, qr/^pgark_backup_last_exit_code\{$L\} 0$/m, 'backup: exit code 0');
my ($size) = $btext =~ /^pgark_backup_last_size_bytes\{$L\} (\d+)$/m;
ok($size && $size > 1_000_000, 'backup: the size read');
is((stat($bfile))[2] & 07777, 0644, 'backup: the file is 0644 (node-exporter reads it)');

$r = run_pgark([ '--config', $config, 'verify' ]);
is($r->{rc}, 0, 'a verify') or diag($r->{stderr});
my $vfile = "$textdir/pgark_main_verify.prom";
my ($ok_at) = slurp_file($vfile) =~ /^pgark_verify_last_success_timestamp_seconds\{$L\} (\S+)$/m;
ok($ok_at && abs($ok_at - time()) < 120, 'verify: the last success time');
like(slurp_file($vfile), qr/^pgark_verify_last_read_bytes\{$L\} [1-9]\d*$/m, 'verify: the bytes read');
$r = run_pgark([ '--config', $config, 'verify', '--backup', 'nosuchbackup' ]);
isnt($r->{rc}, 0, 'a verify of a backup that does not exist fails');
my $vtext = slurp_file($vfile);
promtool_ok($vtext, 'the verify textfile after a failure');
like($vtext, qr/^pgark_verify_last_success\{$L\} 0$/m, 'verify: last_success 0');
like($vtext, qr/^pgark_verify_last_exit_code\{$L\} $r->{rc}$/m, 'verify: its exit code');
like($vtext, qr/^pgark_verify_last_success_timestamp_seconds\{$L\} \Q$ok_at\E$/m,
	'verify: the last success time is the earlier run\'s');
is(slurp_file($bfile), $btext, 'the backup\'s file is untouched');
my @tmp = grep { !/\.prom$/ } map { s{.*/}{}r } glob("$textdir/* $textdir/.*");
is_deeply([ grep { $_ ne '.' && $_ ne '..' } @tmp ], [], 'no temporary file is left');

# The cluster has no retention: expire refuses (exit 2), and says so in its file, which
# has no success time (there never was one).
$r = run_pgark([ '--config', $config, 'expire' ]);
is($r->{rc}, 2, 'an expire without retention fails');
my $etext = slurp_file("$textdir/pgark_main_expire.prom");
promtool_ok($etext, 'the expire textfile');
like($etext, qr/^pgark_expire_last_exit_code\{$L\} 2$/m, 'expire: exit code 2');
unlike($etext, qr/last_success_timestamp/, 'expire: no success time');

# The sample alerting rules.
$r = run_cmd([ $promtool, 'check', 'rules', "$root/contrib/prometheus/pgark-alerts.yml" ]);
is($r->{rc}, 0, 'promtool check rules accepts contrib/prometheus/pgark-alerts.yml')
  or diag($r->{stdout} . $r->{stderr});

is(receiver_stop($rx)->{rc}, 0, 'the receiver stops cleanly');
done_testing();
