// Placeholder until the tool lands in this change.
int main() { return 2; }
