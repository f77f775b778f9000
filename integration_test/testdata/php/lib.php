<?php
// Helpers shared by the test scripts. The test starts PHP-FPM with
// env[SQ_STATE_DIR] set to a temp dir that it reads back afterwards.

declare(strict_types=1);

header('Content-Type: text/plain');

function sq_state_dir(): string
{
    $dir = getenv('SQ_STATE_DIR');
    if ($dir === false || $dir === '') {
        http_response_code(500);
        exit("SQ_STATE_DIR is not set\n");
    }
    return $dir;
}

// sq_name returns a query parameter reduced to a safe file name part.
function sq_name(string $param): string
{
    return preg_replace('/[^A-Za-z0-9_-]/', '', (string)($_GET[$param] ?? ''));
}

// sq_track counts the requests of a tracker (?t=NAME) that are inside the
// backend right now, by role, and keeps the peaks. The test reads
// track-NAME.json to see how many readers overlapped and whether a writer
// ever ran beside another request: max_with_writer is the most requests in
// at once while a writer was in, so 1 means every writer was alone.
// The state lives in a file under flock because FPM workers are separate
// processes.
function sq_track(string $role, int $delta): void
{
    $name = sq_name('t');
    if ($name === '') {
        return;
    }
    $fh = fopen(sq_state_dir() . "/track-$name.json", 'c+');
    flock($fh, LOCK_EX);
    $s = json_decode((string)stream_get_contents($fh), true) ?: [
        'readers' => 0, 'writers' => 0,
        'max_readers' => 0, 'max_writers' => 0, 'max_with_writer' => 0,
    ];
    $s[$role] += $delta;
    $s['max_readers'] = max($s['max_readers'], $s['readers']);
    $s['max_writers'] = max($s['max_writers'], $s['writers']);
    if ($s['writers'] > 0) {
        $s['max_with_writer'] = max($s['max_with_writer'], $s['readers'] + $s['writers']);
    }
    ftruncate($fh, 0);
    rewind($fh);
    fwrite($fh, json_encode($s));
    fflush($fh);
    flock($fh, LOCK_UN);
    fclose($fh);
}

// sq_incremental makes every flush() reach the client at once, headers
// included, so a test can learn that its request is inside the backend.
// Caddy's FastCGI transport buffers a response unless the upstream marks it
// as incremental (RFC 10036); output_buffering is off in the test php.ini.
function sq_incremental(): void
{
    header('Incremental: ?1');
}

// sq_ms returns the ?ms= parameter (milliseconds of simulated work).
function sq_ms(int $default): int
{
    return isset($_GET['ms']) ? max(0, (int)$_GET['ms']) : $default;
}

// sq_event appends a line to the event log events-NAME (?e=NAME) in the
// state dir, so the test can read in which order the requests of a session
// reached the points it cares about. FILE_APPEND with LOCK_EX keeps the
// lines of concurrent workers whole and in order.
function sq_event(string $what): void
{
    $name = sq_name('e');
    if ($name === '') {
        return;
    }
    file_put_contents(sq_state_dir() . "/events-$name", "$what\n", FILE_APPEND | LOCK_EX);
}
