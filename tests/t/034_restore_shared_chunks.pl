# A restore reads each distinct chunk once. A cluster whose databases share catalog
# files byte for byte (template0, template1 and postgres as initdb makes them, and two
# more databases created from template1 by file copy) is backed up into a posix and an
# S3 repository (an s3rver logging every request); its manifest names many chunks more
# than once. Then:
#  - restore from S3: s3rver answered exactly one GET per distinct chunk the manifest
#    names (counted from its request log), the restore says it fetched that many and
#    served the other references from memory, and pg_verifybackup finds the restored
#    tree equal to the source's (every file, size and checksum of the server's own
#    backup_manifest);
#  - restore from the posix repository: the same counts, and (when strace is there) each
#    chunk file opened once; pg_verifybackup passes again.
use strict;
use warnings;

use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo_local";

my $s3 = s3rver_start(log_requests => 1);
is(HTTP::Tiny->new(timeout => 10)->put("$s3->{endpoint}/pgark-shared")->{status},
	200, 'bucket created');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1, extra => ['--data-checksums']);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

# Byte-for-byte copies of template1's files.
sql("CREATE DATABASE copy1 STRATEGY = FILE_COPY");
sql("CREATE DATABASE copy2 STRATEGY = FILE_COPY");
sql('CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 20000) g');

my $config = write_config(
	local_offsite_config(
		spool => "$tmp/spool",
		local => $local,
		s3 => $s3,
		bucket => 'pgark-shared',
		conninfo => "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres",
		extra => "    backup: { chunk_size: 256KiB }\n"),
	"$tmp/pgark.yaml");
mkdir("$tmp/spool") or die "mkdir: $!";

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'backup into both repositories') or diag($r->{stderr});
my $label = (eval { decode_json($r->{stdout}) } // {})->{label} // '';
ok($label, "backup $label");

# The manifest's chunk references: every one, and the distinct ones.
my $m = run_cmd([ tool_bin('repo_dump'), $local, 'main', 'get', "backups/$label/manifest.json" ]);
is($m->{rc}, 0, 'manifest read') or diag($m->{stderr});
my (%refs, $nrefs);
my @lines = split /\n/, $m->{stdout};
shift @lines;    # the header
for my $line (@lines)
{
	my $e = decode_json($line);
	for my $c (@{ $e->{chunks} // [] }) { $refs{$c}++; $nrefs++ }
}
my $distinct = scalar keys %refs;
note("manifest: $nrefs chunk references, $distinct distinct");
cmp_ok($nrefs - $distinct, '>=', 100,
	'the databases share chunks: at least 100 references repeat another');

# s3rver's log: requests for chunk objects answered since offset $from (bytes), by chunk
# name. Its line for a request is the tail of "METHOD PATH STATUS TIME SIZE" (the
# logger cuts a fixed number of characters off the front, the method with them), so
# the method is not there; during a restore every such request is a GET: restore
# stores no chunk and, every chunk of the backup being in the repository's listing,
# asks for none by HEAD.
sub chunk_gets
{
	my ($from) = @_;
	my $log = substr(slurp_file($s3->{log}), $from);
	my %n;
	$n{$1}++ while $log =~ m{/main/chunks/[0-9a-f]{2}/([0-9a-f]{64}) 200 \d+ms}g;
	return \%n;
}

# Everything s3rver answered before this request is in its log once this one is.
sub s3_log_settled
{
	my $probe = "probe-" . int(rand(1e9));
	HTTP::Tiny->new(timeout => 10)->get("$s3->{endpoint}/pgark-shared/$probe");
	return poll_until(sub { index(slurp_file($s3->{log}), "$probe 404") >= 0 }, 30);
}

sub restore
{
	my ($name, @args) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--target', 'immediate', '--json', '--no-progress', @args ]);
	is($res->{rc}, 0, "$name: restore @args") or diag($res->{stderr});
	my $sum = eval { decode_json($res->{stdout}) } // {};
	is($sum->{chunks_fetched}, $distinct, "$name: $distinct chunks fetched, one per distinct chunk");
	is($sum->{chunks_reused}, $nrefs - $distinct,
		"$name: the other references were served from memory");
	command_ok([ 'pg_verifybackup', '-n', '-i', 'pgark-restored-config', $node->data_dir ],
		"$name: pg_verifybackup: every file of the source, with its checksum");
	return $node;
}

# --- from S3 --------------------------------------------------------------------------

ok(s3_log_settled(), 's3rver logs requests');
my $from = -s $s3->{log};
restore('from_s3', '--repo', 'offsite');
ok(s3_log_settled(), 'the restore\'s requests are all logged');
my $gets = chunk_gets($from);
my $ngets = 0;
$ngets += $_ for values %$gets;
is($ngets, $distinct, "from_s3: $ngets GETs of chunk objects for $distinct distinct chunks");
is(scalar(grep { $gets->{$_} > 1 } keys %$gets), 0, 'from_s3: no chunk was fetched twice');
is(scalar(grep { !$refs{$_} } keys %$gets), 0, 'from_s3: only chunks of the backup were fetched');

# --- from the posix repository ----------------------------------------------------------

my $strace = `sh -c 'command -v strace' 2>/dev/null`;
chomp $strace;
if ($strace && run_cmd([ $strace, '-f', '-o', '/dev/null', 'true' ])->{rc} == 0)
{
	my $node = PostgreSQL::Test::Cluster->new('from_local_traced');
	my $trace = "$tmp/open.trace";
	my $res = run_cmd([ $strace, '-f', '-e', 'trace=open,openat,openat2', '-o', $trace,
		pgark_bin(), '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--target', 'immediate', '--no-progress', '--repo', 'local' ]);
	is($res->{rc}, 0, 'from_local_traced: restore under strace') or diag($res->{stderr});
	# Opens of a chunk file, by name (whole path or, walking, its last component); a
	# failed open (= -1) does not count.
	my %opened;
	for my $line (split /\n/, slurp_file($trace))
	{
		$opened{$1}++
		  if $line =~ m{\bopen\w*\(.*"(?:[^"]*/)?([0-9a-f]{64})"} && $line !~ / = -1 /;
	}
	my $nopen = 0;
	$nopen += $_ for values %opened;
	is(scalar keys %opened, $distinct, 'from_local_traced: every distinct chunk file opened');
	is($nopen, $distinct, 'from_local_traced: each opened once');
}
restore('from_local', '--repo', 'local');

$src->stop;
done_testing();
