# Notifications to webhooks, against a real HTTP server on loopback
# (tests/harness/webhook.py): `notify --test` reaches every endpoint and reports each
# answer without showing a URL; the Slack body has block kit's shape; one-shot commands
# send their failures (backup.failed, check.failed, expire.failed) to the endpoints
# that subscribe, retried through 500s until delivered once; an endpoint that never
# answers holds a command only so long, and the event lands in the dead-letter file.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;
use PgarkWebhook;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $wh = webhook_start();
my $dead_port = free_tcp_port();
my $spool = "$tmp/spool";
mkdir $spool;
mkdir "$spool/main";

# A cluster whose server nobody runs: backup and check fail at once.
sub config
{
	my ($notify, %o) = @_;
	my $yaml = "spool: $spool\nlog: { level: detail }\n"
	  . "repos: { local: { type: posix, path: " . ($o{repo} // "$tmp/repo") . " } }\n"
	  . "clusters:\n  main:\n    conninfo: \"host=127.0.0.1 port=$dead_port user=x connect_timeout=2\"\n"
	  . "    repos: [local]\n    retention: { full: 1 }\n"
	  . "notify:\n$notify";
	return write_config($yaml, "$tmp/" . ($o{name} // 'pgark') . '.yaml');
}

my $slack_url = "$wh->{base}/services/T000/B000/SECRETSLACK";
my $json_url = "$wh->{base}/hooks/SECRETJSON";
my $config = config(
	"  - { url: \"$slack_url\", format: slack, events: [\"backup.*\", check.failed] }\n"
	  . "  - { url: \"$json_url\", format: json, events: [expire.failed, check.failed] }\n");
my %env = (PGARK_TEST_NOTIFY_RETRY_MS => 200, PGPASSFILE => '/nonexistent');

# Block kit: a "text" fallback, and blocks each of a known type with its fields.
sub slack_shape_ok
{
	my ($body, $name) = @_;
	my @bad;
	push @bad, 'no text' unless defined $body->{text} && !ref $body->{text} && $body->{text} ne '';
	push @bad, 'blocks not a list' unless ref $body->{blocks} eq 'ARRAY' && @{ $body->{blocks} };
	for my $b (@{ $body->{blocks} // [] })
	{
		my $t = $b->{type} // '';
		if ($t eq 'header')
		{
			push @bad, 'header text not plain_text'
			  unless ($b->{text}{type} // '') eq 'plain_text' && length($b->{text}{text}) <= 150;
		}
		elsif ($t eq 'section')
		{
			push @bad, 'section text not mrkdwn'
			  unless ($b->{text}{type} // '') eq 'mrkdwn' && length($b->{text}{text}) <= 3000;
		}
		elsif ($t eq 'context')
		{
			push @bad, 'context without elements'
			  unless ref $b->{elements} eq 'ARRAY'
			  && !grep { ($_->{type} // '') ne 'mrkdwn' } @{ $b->{elements} };
		}
		else
		{
			push @bad, "block of type \"$t\"";
		}
	}
	is_deeply(\@bad, [], "$name: the Slack body has block kit's shape");
}

# --- notify --test -------------------------------------------------------------------

my $r = run_pgark([ '--config', $config, 'notify', '--test' ], env => \%env);
is($r->{rc}, 0, 'notify --test exits 0 when both endpoints answer 200');
like($r->{stdout}, qr/^endpoint 1 \(slack, 127\.0\.0\.1:\d+\): notify\.test sent, answered 200$/m,
	'endpoint 1 reported by position, format and host');
like($r->{stdout}, qr/^endpoint 2 \(json, 127\.0\.0\.1:\d+\): notify\.test sent, answered 200$/m,
	'endpoint 2 too');
unlike($r->{stdout} . $r->{stderr}, qr/SECRET/, 'no URL path in the output or the log');
my $reqs = webhook_requests($wh);
is(scalar(@$reqs), 2, 'two requests arrived');
my ($slack) = grep { $_->{path} =~ /SECRETSLACK/ } @$reqs;
my ($json) = grep { $_->{path} =~ /SECRETJSON/ } @$reqs;
is($json->{json}{event}, 'notify.test', 'the json endpoint got the event object');
is($json->{json}{cluster}, 'main', 'naming the cluster');
is($json->{content_type}, 'application/json', 'as application/json');
slack_shape_ok($slack->{json}, 'notify.test');

webhook_mode($wh, 'fail 1');
$r = run_pgark([ '--config', $config, 'notify', '--test', '--event', 'rpo.breach' ], env => \%env);
is($r->{rc}, 1, 'notify --test exits 1 when an endpoint answers 500');
like($r->{stdout}, qr/^endpoint 1 \(slack, [^)]*\): rpo\.breach failed \(not subscribed\): the webhook answered 500: planned failure$/m,
	'the failing endpoint shows its answer and that it does not subscribe');
like($r->{stdout}, qr/^endpoint 2 \(json, [^)]*\): rpo\.breach sent \(not subscribed\), answered 200$/m,
	'the other one was sent the sample all the same');
($slack) = grep { $_->{path} =~ /SECRETSLACK/ } @{ webhook_requests($wh) }[ 2 .. 3 ];
slack_shape_ok($slack->{json}, 'rpo.breach sample');
like($slack->{json}{text}, qr/rpo\.breach on main/, 'its fallback text names the event and cluster');

$r = run_pgark([ '--config', $config, 'notify', '--test', '--event', 'rpo.*' ], env => \%env);
is($r->{rc}, 2, 'notify --test --event takes one event, not a group');
like($r->{stderr}, qr/unknown event "rpo\.\*" for notify --test/, 'saying so');

# --- backup.failed, through two 500s -------------------------------------------------

webhook_mode($wh, 'fail 2');
my $before = scalar(@{ webhook_requests($wh) });
$r = run_pgark([ '--config', $config, 'backup' ], env => \%env);
is($r->{rc}, 1, 'backup against a server nobody runs fails');
my @new = @{ webhook_requests($wh) }[ $before .. $#{ webhook_requests($wh) } ];
my @tries = grep { $_->{path} =~ /SECRETSLACK/ } @new;
is_deeply([ map { $_->{status} } @tries ], [ 500, 500, 200 ],
	'the slack endpoint answered 500 twice, then 200: the backup waited for it');
is(scalar(grep { $_->{path} =~ /SECRETJSON/ } @new), 0,
	'the json endpoint, which does not subscribe to backup.failed, got nothing');
my %ids = map { ($_->{json}{blocks}[-1]{elements}[0]{text} =~ /event `([^`]+)`/)[0] => 1 } @tries;
is(scalar(keys %ids), 1, 'the three attempts carry one event');
like($tries[-1]{json}{text}, qr/backup\.failed on main: backup failed: .*connect/,
	'backup.failed says why');
slack_shape_ok($tries[-1]{json}, 'backup.failed');
like($r->{stderr}, qr/notify: backup\.failed \S+ delivered to endpoint 1 \(slack, [^)]*\) after 3 attempts/,
	'the log says it was delivered after 3 attempts');
unlike($r->{stderr}, qr/SECRET/, 'and never shows the URL');

# --- check.failed to both, expire.failed to the json one -------------------------------

$before = scalar(@{ webhook_requests($wh) });
$r = run_pgark([ '--config', $config, 'check' ], env => \%env);
is($r->{rc}, 3, 'check of a server nobody runs exits 3');
@new = @{ webhook_requests($wh) }[ $before .. $#{ webhook_requests($wh) } ];
is(scalar(@new), 2, 'check.failed went to both endpoints');
($json) = grep { $_->{path} =~ /SECRETJSON/ } @new;
is($json->{json}{event}, 'check.failed', 'as check.failed');
is($json->{json}{severity}, 'critical', 'critical');
ok(exists $json->{json}{details}{connection}, 'its details name the failed check');

my $bad_repo = config("  - { url: \"$json_url\", events: [expire.failed] }\n",
	repo => "$tmp/no-such-repo", name => 'expire');
$before = scalar(@{ webhook_requests($wh) });
$r = run_pgark([ '--config', $bad_repo, 'expire' ], env => \%env);
is($r->{rc}, 1, 'expire of a repository that does not exist fails');
@new = @{ webhook_requests($wh) }[ $before .. $#{ webhook_requests($wh) } ];
is(scalar(@new), 1, 'one event sent');
is($new[0]{json}{event}, 'expire.failed', 'expire.failed');
like($new[0]{json}{details}{error}, qr/while expiring repository "local"/, 'with the error');

# --- a webhook that never answers: the command goes on, the event is kept -------------

webhook_mode($wh, 'hang');
unlink "$spool/main/notify-dead.jsonl";
my $t0 = time();
$r = run_pgark([ '--config', $config, 'backup' ],
	env => { %env, PGARK_TEST_NOTIFY_TIMEOUT_S => 2, PGARK_TEST_NOTIFY_WAIT_MS => 3000 });
my $took = time() - $t0;
is($r->{rc}, 1, 'backup fails as before');
cmp_ok($took, '<', 20, sprintf('and exits without waiting on the hung webhook (%.1f s)', $took));
ok(-f "$spool/main/notify-dead.jsonl", 'the undelivered event is in the dead-letter file');
my @dead = map { decode_json($_) } split /\n/, slurp_file("$spool/main/notify-dead.jsonl");
is($dead[0]{event}{event}, 'backup.failed', 'it holds backup.failed');
like($dead[0]{endpoint}, qr/^endpoint 1 \(slack, 127\.0\.0\.1:\d+\)$/, 'naming the endpoint');
unlike(slurp_file("$spool/main/notify-dead.jsonl"), qr/SECRET/, 'without its URL');
is((stat("$spool/main/notify-dead.jsonl"))[2] & 07777, 0600, 'readable by its owner only');
like($r->{stderr}, qr/notify: backup\.failed \S+ to endpoint 1 \([^)]*\) could not be delivered/,
	'the log says it could not be delivered');

done_testing();
