# The S3 requests of a backup and a restore, counted by kind from pgark's debug log (one
# "http: METHOD URL -> STATUS" line per attempt), so that a request added per object,
# or fixed costs that grow, fail here rather than in a bill:
#  - a first backup into an empty S3 repository: exactly one PUT per chunk object the
#    bucket then holds (as many as it says it stored), no chunk read or probed by
#    HEAD, no chunk put twice; everything else (creating the repository, markers,
#    manifests, the backup's WAL, listings) at most a fixed number of requests, and
#    waiting for an expire neither lists backups/ nor reads a backup's marker back;
#  - a second backup after some changes: one PUT per new chunk it reports, each of a
#    chunk the bucket did not hold, and again at most a fixed number of others;
#  - a restore of the second backup: one GET per distinct chunk of its manifest (as
#    many as it says it fetched), none twice, nothing probed by HEAD, and at most a
#    fixed number of other requests (repository, manifests, listings); the restored
#    tree passes pg_verifybackup, so fewer requests did not mean fewer bytes.
use strict;
use warnings;

use File::Find;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

# At most this many requests besides the chunks' own and the running marker's (measured
# on 2026-12-07: 23, 14 and 10; a backup whose WAL spans two segments makes 3 more): a
# few more may come with a reason, never one per object.
my %fixed_max = (first => 26, second => 17, restore => 12);

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $s3 = s3rver_start();
ok(s3_create_bucket($s3, 'pgark-req'), 'bucket created');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1, extra => ['--data-checksums']);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }
sql('CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 60000) g');

mkdir("$tmp/spool") or die "mkdir: $!";
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  s3:
    type: s3
    endpoint: $s3->{endpoint}
    allow_http: true
    bucket: pgark-req
    prefix: site1/
    access_key_id: $s3->{access_key}
    secret_access_key: $s3->{secret_key}
    concurrency: 8
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [s3]
    backup: { chunk_size: 256KiB }
EOF

# The requests in a debug log: [ { method, class, key, status } ], one per attempt;
# class is chunk, wal, backup (manifests and markers), other or list (a page).
sub requests
{
	my ($stderr) = @_;
	my @r;
	for my $line (split /\n/, $stderr)
	{
		next unless $line =~ m{ debug\s+http: (\S+) (\S+) -> (\d+)};
		my ($method, $url, $status) = ($1, $2, $3);
		my ($path) = $url =~ m{^https?://[^/]+/pgark-req(.*)$};
		$path //= '';
		$path =~ s{^/}{};
		my $class =
			$path =~ /^\?/ ? 'list'
		  : $path =~ m{^site1/main/chunks/} ? 'chunk'
		  : $path =~ m{^site1/main/wal/} ? 'wal'
		  : $path =~ m{^site1/main/backups/} ? 'backup'
		  : 'other';
		push @r, { method => $method, class => $class, key => $path, status => $status };
	}
	return \@r;
}

sub by_kind
{
	my ($reqs) = @_;
	my %n;
	$n{"$_->{class} $_->{method}"}++ for @$reqs;
	return join(', ', map { "$_: $n{$_}" } sort keys %n);
}

# Chunk objects s3rver holds: their keys.
sub stored_chunks
{
	my %c;
	my $dir = "$s3->{dir}/pgark-req/site1/main/chunks";
	find(sub { $c{$1} = 1 if /^([0-9a-f]{64})\._S3rver_object$/ }, $dir) if -d $dir;
	return \%c;
}

sub count_where
{
	my ($reqs, $pred) = @_;
	return scalar grep { $pred->($_) } @$reqs;
}

sub backup
{
	my ($name, $before) = @_;
	my $r = run_pgark([ '--config', $config, '--log-level', 'debug', 'backup', '--no-progress',
		'--json' ]);
	is($r->{rc}, 0, "$name backup") or diag($r->{stderr});
	my $sum = eval { decode_json($r->{stdout}) } // {};
	my $reqs = requests($r->{stderr});
	my $retried = () = $r->{stderr} =~ / retrying s3 /g;
	note("$name backup: " . scalar(@$reqs) . " requests ($retried retried): " . by_kind($reqs));
	my $after = stored_chunks();
	my @puts = grep { $_->{class} eq 'chunk' && $_->{method} eq 'PUT' } @$reqs;
	my %put;
	$put{ $_->{key} }++ for @puts;
	my $new = scalar(grep { !$before->{$_} } keys %$after);
	cmp_ok($new, '>', 0, "$name backup: $new new chunk objects in the bucket");
	is($sum->{new_chunks}, $new, "$name backup: says it stored as many");
	is(scalar(@puts) - $retried, $new, "$name backup: one PUT per new chunk object");
	is(scalar(keys %put), $new, "$name backup: each new chunk object put");
	cmp_ok(scalar(grep { $put{$_} > 1 } keys %put),
		'<=', $retried, "$name backup: no chunk put twice but for a retry");
	is(scalar(grep { my ($h) = m{/([0-9a-f]{64})$}; $before->{$h} } keys %put),
		0, "$name backup: no chunk the bucket held was put again");
	is(count_where($reqs, sub { $_[0]{class} eq 'chunk' && $_[0]{method} ne 'PUT' }),
		0, "$name backup: no chunk read or probed by HEAD");
	# waiting for an expire looks at the expire marker only: no backup marker listed or read
	is( count_where(
			$reqs, sub { $_[0]{class} eq 'list' && $_[0]{key} =~ /prefix=site1%2Fmain%2Fbackups/ }),
		0,
		"$name backup: backups/ not listed");
	is(count_where($reqs, sub { $_[0]{method} eq 'GET' && $_[0]{key} =~ /\.running$/ }),
		0, "$name backup: no running marker read back");
	# the running marker's rewrites come with time (one a minute), not with objects
	my $beats = count_where($reqs,
		sub { $_[0]{method} eq 'PUT' && $_[0]{key} =~ m{^site1/main/backups/[^/]+\.running$} });
	cmp_ok($beats, '>=', 1, "$name backup: its running marker written");
	my $others = scalar(@$reqs) - scalar(@puts) - $beats;
	cmp_ok($others, '<=', $fixed_max{$name},
		"$name backup: $others other requests (and $beats of the running marker), at most "
		  . $fixed_max{$name});
	return ($sum, $after);
}

my ($first, $stored) = backup('first', {});
sql('UPDATE t SET pad = md5(pad) WHERE g % 10 = 0');
sql('CHECKPOINT');
my ($second) = backup('second', $stored);

my $node = PostgreSQL::Test::Cluster->new('restored');
my $r = run_pgark([ '--config', $config, '--log-level', 'debug', 'restore', '--pgdata',
	$node->data_dir, '--target', 'immediate', '--json', '--no-progress' ]);
is($r->{rc}, 0, 'restore of the second backup') or diag($r->{stderr});
my $sum = eval { decode_json($r->{stdout}) } // {};
my $reqs = requests($r->{stderr});
my $retried = () = $r->{stderr} =~ / retrying s3 /g;
note('restore: ' . scalar(@$reqs) . " requests ($retried retried): " . by_kind($reqs));
is($retried, 0, 'restore: no request retried (the counts below are exact)');
my @gets = grep { $_->{class} eq 'chunk' && $_->{method} eq 'GET' } @$reqs;
my %got;
$got{ $_->{key} }++ for @gets;
cmp_ok(scalar(@gets), '>', 0, 'restore: chunks fetched');
is(scalar(@gets), $sum->{chunks_fetched}, 'restore: one GET per chunk it says it fetched');
is(scalar(grep { $got{$_} > 1 } keys %got), 0, 'restore: no chunk fetched twice');
is(count_where($reqs, sub { $_[0]{method} eq 'HEAD' }), 0, 'restore: nothing probed by HEAD');
is(count_where($reqs, sub { $_[0]{method} ne 'GET' }), 0, 'restore: nothing written or deleted');
my $others = scalar(@$reqs) - scalar(@gets);
cmp_ok($others, '<=', $fixed_max{restore},
	"restore: $others requests besides the chunks, at most $fixed_max{restore}");
command_ok([ 'pg_verifybackup', '-n', '-i', 'pgark-restored-config', $node->data_dir ],
	'restore: pg_verifybackup finds every file of the source, with its checksum');

$src->stop;
done_testing();
