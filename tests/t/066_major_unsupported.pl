# A server outside the supported majors (PostgreSQL 12 here; 19 would be refused the
# same way until the matrix passes on it): check, receive and backup each say so in one
# error that names the supported majors, exit 2, and create nothing — no replication
# slot on the server (even with create_slot: true), no repo.json, no backup marker, no
# WAL or status in the spool.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkMajors;
use PgarkTest;

my $node = PostgreSQL::Test::Cluster->new('old', install_path => pg_install_path(12));
$node->init(allows_streaming => 1);
$node->start;
my $version = $node->safe_psql('postgres', 'SHOW server_version');
like($version, qr/^12\./, "the server runs PostgreSQL 12 ($version)");

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $repo ] ],
		conninfo => 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres',
		create_slot => 1),
	"$tmp/pgark.yaml");
my $target = $node->host . ':' . $node->port;
my $refusal = qr/server "\Q$target\E" runs PostgreSQL \Q$version\E, which pgark does not support \(PostgreSQL 13 to 18 are supported\)/;

sub nothing_created
{
	my ($what) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0',
		"$what: no replication slot on the server");
	ok(!-e "$repo/main/repo.json", "$what: no repo.json");
	is(join(',', glob("$repo/main/backups/*")), '', "$what: no backup marker");
	# The receiver takes its spool's lock before it connects (one receiver per spool):
	# the lock file is all there may be.
	my @kept = grep { !m{/receive\.lock$} } glob("$tmp/spool/main/* $tmp/spool/main/.[!.]*");
	is_deeply(\@kept, [], "$what: nothing in the spool but the receiver's lock");
}

my $r = run_pgark([ '--config', $config, 'check' ]);
is($r->{rc}, 2, 'check: exit 2');
like($r->{stdout}, qr/^FAIL\s+server_version\s+$refusal \(hint: nothing was created on the server;/m,
	'check: one failed check that says why');
is(scalar(() = $r->{stdout} =~ /^FAIL/mg), 1, 'check: and no other');
nothing_created('check');

my $rx = receiver_start($config);
is(receiver_wait_exit($rx, 30), 2, 'receive: exit 2, at once (no retrying)');
my @errors = grep { / error / && !/ error  hint: / } split /\n/, receiver_log($rx);
is(scalar(@errors), 1, 'receive: one error') or diag(receiver_log($rx));
like($errors[0] // '', $refusal, 'receive: naming the server, its version and the supported majors');
like(receiver_log($rx), qr/hint: nothing was created on the server/, 'receive: and that nothing was created');
nothing_created('receive');

$r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 2, 'backup: exit 2');
like($r->{stderr}, $refusal, 'backup: the same error');
is(scalar(() = $r->{stderr} =~ / error  (?!hint:)/g), 1, 'backup: once');
nothing_created('backup');

$node->stop;
done_testing();
