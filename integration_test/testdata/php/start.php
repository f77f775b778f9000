<?php
// Starts a session with a zeroed counter and prints its ID.
require __DIR__ . '/lib.php';

session_start();
$_SESSION['n'] = 0;
echo session_id(), "\n";
