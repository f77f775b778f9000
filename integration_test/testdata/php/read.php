<?php
// A reader: reads the session counter without writing (read_and_close),
// sends the headers and the value at once so the test knows it has started,
// then stays in the backend for ?ms= (default 0) so concurrent readers
// overlap.
require __DIR__ . '/lib.php';

sq_track('readers', 1);
sq_incremental();
session_start(['read_and_close' => true]);
echo (int)($_SESSION['n'] ?? 0), "\n";
flush();
usleep(sq_ms(0) * 1000);
sq_track('readers', -1);
