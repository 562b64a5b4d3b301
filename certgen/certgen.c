/* placeholder main replaced by the certgen implementation */
int main(void);
int main(void) { return 1; }
